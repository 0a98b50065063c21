"""numformer.optim.lr_scheduler against torch.optim.lr_scheduler: the rates (and cycled
momenta) step by step, schedulers composed on one optimiser, and state dicts that round-trip
within numformer and through PyTorch's schedulers."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import numformer as nf
from numformer import optim
from numformer.optim import lr_scheduler as S

T = torch.optim.lr_scheduler
GROUP_KEYS = ("lr", "initial_lr", "max_lr", "min_lr", "momentum", "betas", "max_momentum", "base_momentum")


def _optimisers(kind="sgd", lrs=(0.1, 0.02), momentum=0.0):
    """A numformer optimiser and PyTorch's, one group per rate."""
    ours = [{"params": [nf.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    theirs = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    if kind == "sgd":
        return optim.SGD(ours, lr=lrs[0], momentum=momentum), torch.optim.SGD(theirs, lr=lrs[0], momentum=momentum)
    return optim.Adam(ours, lr=lrs[0]), torch.optim.Adam(theirs, lr=lrs[0])


def _groups(opt) -> list[dict]:
    """The scheduled values of each group (rate, momentum or beta1), as plain numbers."""
    out = []
    for g in opt.param_groups:
        row = {"lr": float(g["lr"])}
        if "betas" in g:
            row["beta1"] = float(g["betas"][0])
        if "momentum" in g:
            row["momentum"] = float(g["momentum"])
        out.append(row)
    return out


def _trace(opt, sched, steps, metrics=None, epochs=None):
    """The groups' values after construction and after each of ``steps`` steps, with
    ``get_last_lr()`` checked against the groups at every step."""
    trace = [_groups(opt)]
    for i in range(steps):
        opt.step()
        if metrics is not None:
            sched.step(metrics[i])
        elif epochs is not None:
            sched.step(epochs[i])
        else:
            sched.step()
        assert [float(lr) for lr in sched.get_last_lr()] == [g["lr"] for g in opt.param_groups]
        trace.append(_groups(opt))
    return trace


def _assert_traces_equal(ours, theirs, rtol=1e-12):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert [sorted(g) for g in a] == [sorted(g) for g in b], i
        for ga, gb in zip(a, b):
            for key in ga:
                assert ga[key] == pytest.approx(gb[key], rel=rtol, abs=1e-300), (i, key, ga[key], gb[key])


def _both(make, steps, kind="sgd", momentum=0.0, lrs=(0.1, 0.02), metrics=None, epochs=None):
    """Run ``make(module, optimiser)`` on numformer and PyTorch side by side; compare."""
    opt, t_opt = _optimisers(kind, lrs, momentum)
    ours = _trace(opt, make(S, opt), steps, metrics, epochs)
    theirs = _trace(t_opt, make(T, t_opt), steps, metrics, epochs)
    _assert_traces_equal(ours, theirs)
    return ours


# --- each scheduler's rates, step by step, against PyTorch ---------------------------------------

CASES = {
    "LambdaLR": lambda m, o: m.LambdaLR(o, [lambda e: 0.9**e, lambda e: 1 / (1 + e)]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lambda e: 0.95 if e % 3 else 0.5),
    "StepLR": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[30, 5, 12, 12], gamma=0.3),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=9),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=17),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.93),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=23, power=2.5),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=9, eta_min=1e-3),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2, eta_min=1e-4),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=60),
    "OneCycleLR-three-phase-linear": lambda m, o: m.OneCycleLR(
        o, max_lr=0.3, epochs=6, steps_per_epoch=10, pct_start=0.25, anneal_strategy="linear", three_phase=True
    ),
    "CyclicLR-triangular2": lambda m, o: m.CyclicLR(
        o, 0.01, [0.1, 0.2], step_size_up=4, step_size_down=7, mode="triangular2"
    ),
    "CyclicLR-exp_range": lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=5, mode="exp_range", gamma=0.97),
    "CyclicLR-scale_fn": lambda m, o: m.CyclicLR(
        o, 0.01, 0.1, step_size_up=3, scale_fn=lambda x: 1 / (1 + x), scale_mode="iterations", cycle_momentum=False
    ),
}


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_rates_and_momenta_equal_pytorch_over_60_steps(name, kind):
    """Every group's rate (and the momentum or beta1 that OneCycleLR and CyclicLR cycle) after
    construction and each of 60 steps, on SGD with momentum and on Adam."""
    _both(CASES[name], 60, kind=kind, momentum=0.9)


@settings(max_examples=30, deadline=None)
@given(
    gamma=st.floats(0.05, 1.0),
    step_size=st.integers(1, 12),
    milestones=st.lists(st.integers(0, 50), max_size=6),
    steps=st.integers(1, 60),
)
def test_decays_equal_pytorch_for_random_settings(gamma, step_size, milestones, steps):
    _both(lambda m, o: m.StepLR(o, step_size, gamma), steps)
    _both(lambda m, o: m.MultiStepLR(o, milestones, gamma), steps)
    _both(lambda m, o: m.ExponentialLR(o, gamma), steps)
    _both(lambda m, o: m.ConstantLR(o, gamma, step_size), steps)
    _both(lambda m, o: m.LinearLR(o, gamma, 1 - gamma / 2, step_size), steps)


@settings(max_examples=30, deadline=None)
@given(
    t_max=st.integers(1, 15),
    eta_min=st.sampled_from([0.0, 1e-3, 0.05]),
    power=st.floats(0.5, 3.0),
    steps=st.integers(1, 70),
)
def test_annealing_equals_pytorch_for_random_settings(t_max, eta_min, power, steps):
    """The cosine's recursive form through its troughs (steps well past T_max) and the
    polynomial's."""
    _both(lambda m, o: m.CosineAnnealingLR(o, t_max, eta_min), steps)
    _both(lambda m, o: m.PolynomialLR(o, t_max, power), steps)
    _both(lambda m, o: m.CosineAnnealingWarmRestarts(o, t_max, 1 + t_max % 3, eta_min), steps)


@settings(max_examples=20, deadline=None)
@given(
    t_0=st.integers(1, 6),
    t_mult=st.integers(1, 3),
    epochs=st.lists(st.floats(0.0, 40.0), min_size=1, max_size=25),
)
def test_warm_restarts_at_float_epochs_equal_pytorch(t_0, t_mult, epochs):
    """step(epoch) with fractional epochs, in any order (per-batch stepping)."""
    _both(lambda m, o: m.CosineAnnealingWarmRestarts(o, t_0, t_mult, 1e-3), len(epochs), epochs=epochs)


@settings(max_examples=40, deadline=None)
@given(
    metrics=st.lists(st.sampled_from([1.0, 0.99995, 0.9, 0.8, 1.2, 0.5]), min_size=1, max_size=40),
    mode=st.sampled_from(["min", "max"]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    threshold=st.sampled_from([0.0, 1e-4, 0.05]),
    factor=st.sampled_from([0.1, 0.5, 0.9]),
    patience=st.integers(0, 4),
    cooldown=st.integers(0, 3),
    min_lr=st.sampled_from([0.0, 1e-3, [1e-3, 0.015]]),
    eps=st.sampled_from([1e-8, 1e-3]),
)
def test_reduce_on_plateau_equals_pytorch_for_every_argument(
    metrics, mode, threshold_mode, threshold, factor, patience, cooldown, min_lr, eps
):
    def make(m, o):
        return m.ReduceLROnPlateau(o, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps)

    _both(make, len(metrics), metrics=metrics)


# --- schedulers composed on one optimiser ------------------------------------------------------


def test_plateau_and_step_on_one_optimiser_compose_as_pytorch():
    """The bug of #35: the plateau cuts 0.5 to 0.05 at step 4, StepLR decays at step 5, so
    step 6's rate is 5e-3 (StepLR multiplies the rate the plateau left; numformer's closed form
    used to rewrite it to 5e-2)."""
    runs = []
    for m, (opt, _) in ((S, _optimisers(lrs=(0.5,))), (T, _optimisers(lrs=(0.5,))[::-1])):
        plateau = m.ReduceLROnPlateau(opt, factor=0.1, patience=2)
        step = m.StepLR(opt, step_size=5, gamma=0.1)
        lrs = []
        for _ in range(8):
            opt.step()
            step.step()
            plateau.step(1.0)  # never improves after the first call
            lrs.append(opt.param_groups[0]["lr"])
        runs.append(lrs)
    assert runs[0][:6] == pytest.approx([0.5, 0.5, 0.5, 0.05, 5e-3, 5e-3]) and runs[0][6] == pytest.approx(5e-4)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-12)


COMPOSITES = {
    "two-on-one-optimiser": lambda m, o: _Both(m.StepLR(o, 4, 0.5), m.ExponentialLR(o, 0.97)),
    "ChainedScheduler": lambda m, o: m.ChainedScheduler(
        [m.ConstantLR(o, 0.5, 6), m.ExponentialLR(o, 0.9), m.MultiStepLR(o, [10, 20], 0.3)]
    ),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o,
        [m.LinearLR(o, 0.1, 1.0, 5), m.CosineAnnealingLR(o, 12, 1e-3), m.StepLR(o, 3, 0.5)],
        milestones=[5, 20],
    ),
    "ChainedScheduler-of-SequentialLR": lambda m, o: m.ChainedScheduler(
        [m.SequentialLR(o, [m.ConstantLR(o, 0.2, 4), m.ExponentialLR(o, 0.9)], milestones=[4]), m.StepLR(o, 3, 0.5)]
    ),
    "MultiplicativeLR-after-LinearLR": lambda m, o: _Both(
        m.LinearLR(o, 0.5, 1.0, 6), m.MultiplicativeLR(o, lambda e: 0.97)
    ),
}


class _Both:
    """Two schedulers stepped together (what a script with two ``.step()`` calls does)."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def step(self):
        self.first.step()
        self.second.step()

    def get_last_lr(self):
        return self.second.get_last_lr()


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composed_schedulers_equal_pytorch(name):
    _both(COMPOSITES[name], 40)


# --- state dicts -------------------------------------------------------------------------------

RESUMABLE = {
    **{name: CASES[name] for name in CASES if name != "CyclicLR-scale_fn"},
    "SequentialLR": COMPOSITES["SequentialLR"],
    "ChainedScheduler": COMPOSITES["ChainedScheduler"],
    "NoamLR": lambda m, o: S.NoamLR(o, d_model=64, warmup_steps=8),
    "WarmupCosineLR": lambda m, o: S.WarmupCosineLR(o, warmup_steps=5, total_steps=30, min_lr=1e-3),
}


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_a_state_dict_mid_run_resumes_as_an_uninterrupted_run(name):
    """Save the optimiser and the scheduler (through JSON, as numformer's checkpoints do) after
    13 steps, restore both into fresh ones: the next 30 steps are those of a run that never
    stopped."""
    make = RESUMABLE[name]
    opt, _ = _optimisers(momentum=0.9)
    straight = _trace(opt, make(S, opt), 43)
    opt, _ = _optimisers(momentum=0.9)
    sched = make(S, opt)
    _trace(opt, sched, 13)
    saved = opt.state_dict(), json.loads(json.dumps(sched.state_dict()))  # as a checkpoint's state.json holds it
    fresh_opt, _ = _optimisers(momentum=0.9)
    fresh = make(S, fresh_opt)
    fresh_opt.load_state_dict(saved[0])
    fresh.load_state_dict(saved[1])
    resumed = _trace(fresh_opt, fresh, 30)
    _assert_traces_equal(resumed, straight[13:], rtol=0)


PYTORCH_TWINS = {name: make for name, make in RESUMABLE.items() if name not in ("NoamLR", "WarmupCosineLR")}
PYTORCH_TWINS["ReduceLROnPlateau"] = lambda m, o: m.ReduceLROnPlateau(o, factor=0.5, patience=1, cooldown=1)


def _copy_groups(source, target):
    for a, b in zip(source.param_groups, target.param_groups):
        b.update({k: a[k] for k in GROUP_KEYS if k in a})


@pytest.mark.parametrize("name", sorted(PYTORCH_TWINS))
def test_state_dicts_carry_pytorch_keys_and_load_into_pytorch_and_back(name):
    """A numformer scheduler's state dict has PyTorch's keys; loaded (with the groups' values)
    into PyTorch's scheduler after 11 steps, both continue alike; PyTorch's state loads back
    into a fresh numformer scheduler that continues alike again."""
    make = PYTORCH_TWINS[name]
    plateau = name == "ReduceLROnPlateau"
    metrics = [1.0, 0.9, 0.9, 0.9, 0.8] * 10
    opt, t_opt = _optimisers(momentum=0.9)
    sched, t_sched = make(S, opt), make(T, t_opt)

    def keys(state):
        nested = [sorted(s) for s in state.get("_schedulers", [])]
        return sorted(state), nested

    assert keys(sched.state_dict()) == keys(t_sched.state_dict())
    _trace(opt, sched, 11, metrics[:11] if plateau else None)
    _copy_groups(opt, t_opt)
    t_sched.load_state_dict(sched.state_dict())
    rest = metrics[11:30] if plateau else None
    _assert_traces_equal(_trace(opt, sched, 19, rest), _trace(t_opt, t_sched, 19, rest))

    back_opt, _ = _optimisers(momentum=0.9)
    back = make(S, back_opt)
    _copy_groups(t_opt, back_opt)
    back.load_state_dict(t_sched.state_dict())
    tail = metrics[30:] if plateau else None
    _assert_traces_equal(_trace(back_opt, back, 20, tail), _trace(t_opt, t_sched, 20, tail))


def test_lambda_state_keeps_a_callable_objects_attributes_and_milestones_survive_json():
    class Decay:
        def __init__(self, rate):
            self.rate = rate

        def __call__(self, epoch):
            return self.rate**epoch

    opt, _ = _optimisers()
    sched = S.LambdaLR(opt, [Decay(0.9), lambda e: 1.0])
    sched.lr_lambdas[0].rate = 0.5
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"rate": 0.5}, None]
    other = S.LambdaLR(_optimisers()[0], [Decay(0.9), lambda e: 1.0])
    other.load_state_dict(state)
    assert other.lr_lambdas[0].rate == 0.5
    # a checkpoint's state.json turns the milestone Counter's keys into strings
    opt, _ = _optimisers()
    multi = S.MultiStepLR(opt, [3, 3, 5], 0.5)
    again = S.MultiStepLR(_optimisers()[0], [1], 0.5)
    again.load_state_dict(json.loads(json.dumps(multi.state_dict())))
    assert again.milestones == multi.milestones


# --- deprecations, warnings and errors, as PyTorch's ---------------------------------------------


def test_step_with_an_epoch_warns_and_uses_the_closed_form_as_pytorch():
    epochs = [3, 7, 2, 15, 16]
    for make in (CASES["StepLR"], CASES["MultiStepLR"], CASES["LinearLR"], CASES["CosineAnnealingLR"]):
        with pytest.warns(UserWarning, match="epoch parameter"):
            _both(make, len(epochs), epochs=epochs)


def test_get_lr_outside_step_warns():
    opt, _ = _optimisers()
    sched = S.StepLR(opt, 3)
    with pytest.warns(UserWarning, match="get_last_lr"):
        sched.get_lr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda m, o: m.ConstantLR(o, factor=1.5), ValueError, "between 0 and 1"),
        (lambda m, o: m.LinearLR(o, start_factor=0), ValueError, "greater than 0"),
        (lambda m, o: m.ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor should be < 1.0"),
        (lambda m, o: m.ReduceLROnPlateau(o, mode="up"), ValueError, "mode up is unknown"),
        (lambda m, o: m.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "expected 2 min_lrs, got 1"),
        (lambda m, o: m.LambdaLR(o, [lambda e: 1.0]), ValueError, "Expected 2 lr_lambdas, but got 1"),
        (lambda m, o: m.MultiplicativeLR(o, [1, 2]), TypeError, "lr_lambda should be a function"),
        (lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "T_0"),
        (lambda m, o: m.OneCycleLR(o, 1.0), ValueError, "total_steps OR"),
        (lambda m, o: m.OneCycleLR(o, 1.0, 10, pct_start=1), ValueError, "pct_start"),
        (lambda m, o: m.OneCycleLR(o, 1.0, 10, anneal_strategy="exp"), ValueError, "anneal_strategy"),
        (lambda m, o: m.CyclicLR(o, 0.01, 0.1, mode="sine"), ValueError, "mode is invalid"),
        (lambda m, o: m.StepLR(o, 3, last_epoch=4), KeyError, "initial_lr"),
        (lambda m, o: m.SequentialLR(o, [m.ReduceLROnPlateau(o)], []), ValueError, "ReduceLROnPlateau"),
        (lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2), m.StepLR(o, 3)], []), ValueError, "milestone"),
        (lambda m, o: m.ChainedScheduler([]), ValueError, "at least one scheduler"),
    ],
)
def test_bad_arguments_raise_pytorchs_errors(make, error, message):
    for m, opt in zip((S, T), _optimisers()):
        with pytest.raises(error, match=message if m is S else None):
            make(m, opt)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        S.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), 3)


def test_one_cycle_past_its_total_steps_raises_and_resumes_with_last_epoch():
    opt, _ = _optimisers()
    sched = S.OneCycleLR(opt, 1.0, total_steps=4)
    for _ in range(4):
        sched.step()
    with pytest.raises(ValueError, match="tried to step 5 times"):
        sched.step()
    # resuming by last_epoch (the groups keep initial_lr, max_lr, min_lr): the rate of that step
    opt, t_opt = _optimisers()
    S.OneCycleLR(opt, 1.0, total_steps=20)
    T.OneCycleLR(t_opt, 1.0, total_steps=20)
    resumed = S.OneCycleLR(opt, 1.0, total_steps=20, last_epoch=6)
    t_resumed = T.OneCycleLR(t_opt, 1.0, total_steps=20, last_epoch=6)
    assert resumed.get_last_lr() == pytest.approx(t_resumed.get_last_lr(), rel=1e-12)
    assert math.isclose(resumed.last_epoch, 7)

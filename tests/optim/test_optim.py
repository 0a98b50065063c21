"""Optimisers, schedules and clipping against PyTorch, step by step; exact resume from state
dicts; the seed's section-7 clipping claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numformer as nf
from numformer import nn, optim
from numformer.nn.utils import clip_grad_norm_, clip_grad_value_
from numformer.optim import lr_scheduler as S

TOL = {np.float32: {"rtol": 2e-5, "atol": 2e-6}, np.float64: {"rtol": 1e-10, "atol": 1e-12}}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}

OPTIMISERS = {
    "sgd": (optim.SGD, torch.optim.SGD, {"lr": 0.1}),
    "sgd_momentum_wd": (
        optim.SGD,
        torch.optim.SGD,
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
    ),
    "sgd_nesterov": (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    "adam": (optim.Adam, torch.optim.Adam, {"lr": 0.01}),
    "adam_l2_amsgrad": (
        optim.Adam,
        torch.optim.Adam,
        {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1, "amsgrad": True},
    ),
    "adamw": (optim.AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    "adamw_maximize": (optim.AdamW, torch.optim.AdamW, {"lr": 0.01, "maximize": True}),
}


def _pair(dtype, seed=0):
    nf.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    t = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    t.to(TORCH_DTYPE[dtype]).load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in m.state_dict().items()})
    return m, t


def _groups(model, kw, framework_params):
    params = list(framework_params)
    return [{"params": params[:2]}, {"params": params[2:], "lr": kw["lr"] * 0.5}]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_optimiser_matches_torch_for_twenty_steps(name, dtype):
    nf_cls, t_cls, kw = OPTIMISERS[name]
    m, t = _pair(dtype)
    opt = nf_cls(_groups(m, kw, m.parameters()), **kw)
    t_opt = t_cls(_groups(t, kw, t.parameters()), **kw)
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.standard_normal((6, 4)).astype(dtype)
        y = rng.integers(0, 3, 6)
        opt.zero_grad()
        nn.functional.cross_entropy(m(nf.Tensor(x)), y).backward()
        opt.step()
        t_opt.zero_grad()
        torch.nn.functional.cross_entropy(t(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        t_opt.step()
    for (k, v), tv in zip(m.state_dict().items(), t.state_dict().values()):
        assert v.dtype == dtype
        np.testing.assert_allclose(v, tv.numpy(), **TOL[dtype], err_msg=k)


def _run(model, opt, sched, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.standard_normal((6, 4)).astype(np.float32)
        opt.zero_grad()
        (model(nf.Tensor(x)) ** 2).mean().backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("cls", [optim.SGD, optim.AdamW])
def test_optimiser_and_scheduler_resume_bit_for_bit(cls):
    def fresh():
        m, _ = _pair(np.float32)
        opt = cls(m.parameters(), lr=0.05, **({"momentum": 0.9} if cls is optim.SGD else {}))
        return m, opt, S.WarmupCosineLR(opt, warmup_steps=3, total_steps=10)

    m, opt, sched = fresh()
    _run(m, opt, sched, 10, seed=0)
    m2, opt2, sched2 = fresh()
    _run(m2, opt2, sched2, 4, seed=0)
    saved = ({k: v.clone() for k, v in m2.state_dict().items()}, opt2.state_dict(), sched2.state_dict())
    m3, opt3, sched3 = fresh()
    m3.load_state_dict(saved[0])
    opt3.load_state_dict(saved[1])
    sched3.load_state_dict(saved[2])
    # continue with the same data stream: replay the first 4 batches' draws, then 6 more
    rng_state = np.random.default_rng(0)
    for _ in range(4):
        rng_state.standard_normal((6, 4))
    for _ in range(6):
        x = rng_state.standard_normal((6, 4)).astype(np.float32)
        opt3.zero_grad()
        (m3(nf.Tensor(x)) ** 2).mean().backward()
        opt3.step()
        sched3.step()
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m3.state_dict()[k], v, err_msg=k)


# --- schedules -------------------------------------------------------------------------------


def _lrs(sched, opt, steps, metric=None):
    out = []
    for i in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(metric[i]) if metric is not None else sched.step()
    return out


def _opts(lr=0.1):
    p = nf.zeros(2, requires_grad=True)
    tp = torch.zeros(2, requires_grad=True)
    return optim.SGD([p], lr=lr), torch.optim.SGD([tp], lr=lr)


@pytest.mark.parametrize("case", ["lambda", "step", "onecycle", "plateau", "noam"])
def test_schedules_match_torch(case):
    opt, t_opt = _opts()
    metric = None
    if case == "lambda":
        a, b = S.LambdaLR(opt, lambda s: 0.95**s), torch.optim.lr_scheduler.LambdaLR(t_opt, lambda s: 0.95**s)
    elif case == "step":
        a, b = S.StepLR(opt, 7, gamma=0.5), torch.optim.lr_scheduler.StepLR(t_opt, 7, gamma=0.5)
    elif case == "onecycle":
        a = S.OneCycleLR(opt, max_lr=1.0, total_steps=40)
        b = torch.optim.lr_scheduler.OneCycleLR(t_opt, max_lr=1.0, total_steps=40, cycle_momentum=False)
    elif case == "plateau":
        metric = [1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.85, 0.85, 0.85, 0.85] * 4
        a = S.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1)
        b = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, factor=0.5, patience=2, cooldown=1)
    else:  # the paper's schedule, against the same formula through torch's LambdaLR
        opt, t_opt = _opts(lr=1.0)
        a = S.NoamLR(opt, d_model=512, warmup_steps=10)
        b = torch.optim.lr_scheduler.LambdaLR(t_opt, lambda s: 512**-0.5 * min((s + 1) ** -0.5, (s + 1) * 10**-1.5))
    np.testing.assert_allclose(_lrs(a, opt, 40, metric), _lrs(b, t_opt, 40, metric), rtol=1e-12)


def test_warmup_cosine_shape():
    opt, _ = _opts(lr=1.0)
    lrs = _lrs(S.WarmupCosineLR(opt, warmup_steps=5, total_steps=25, min_lr=0.1), opt, 30)
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[25:] == pytest.approx([0.1] * 5)
    noam_opt, _ = _opts(lr=1.0)
    noam = _lrs(S.NoamLR(noam_opt, d_model=64, warmup_steps=8), noam_opt, 20)
    assert int(np.argmax(noam)) == 7  # peak at the end of warm-up


# --- clipping (seed section 7) ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_torch_and_hits_max_norm(norm_type, dtype):
    rng = np.random.default_rng(0)
    grads = [
        (rng.standard_normal((10, 20)) * 5).astype(dtype),
        (rng.standard_normal((20, 5)) * 8).astype(dtype),
        (rng.standard_normal(5) * 3).astype(dtype),
    ]  # the seed's simulated exploding gradients
    params = [nf.zeros(g.shape, dtype=dtype, requires_grad=True) for g in grads]
    t_params = [torch.zeros(g.shape, dtype=TORCH_DTYPE[dtype], requires_grad=True) for g in grads]
    for p, tp, g in zip(params, t_params, grads):
        p.grad, tp.grad = nf.tensor(g), torch.from_numpy(g.copy())
    total = clip_grad_norm_(params, 5.0, norm_type)
    t_total = torch.nn.utils.clip_grad_norm_(t_params, 5.0, norm_type)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(total.item(), t_total.item(), rtol=rtol)
    for p, tp in zip(params, t_params):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=rtol, atol=1e-7)
    flat = np.concatenate([p.grad.numpy().ravel() for p in params])
    after = np.abs(flat).max() if np.isinf(norm_type) else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    assert after == pytest.approx(5.0, rel=1e-6 if dtype == np.float64 else 1e-5)


def test_clip_grad_value_bounds_every_element_and_errors():
    p = nf.zeros(50, requires_grad=True)
    p.grad = nf.tensor(np.linspace(-10, 10, 50).astype(np.float32))
    clip_grad_value_([p], 1.5)
    assert np.abs(p.grad.numpy()).max() == pytest.approx(1.5) and p.grad.dtype == np.float32
    with pytest.raises(ValueError, match=r"max_norm must be > 0, got 0"):
        clip_grad_norm_([p], 0)
    p.grad.numpy()[0] = np.nan
    with pytest.raises(RuntimeError, match="total norm of order 2.0 is nan"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


def test_bad_optimiser_arguments():
    p = [nf.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=r"SGD: lr must be > 0, got 0"):
        optim.SGD(p, lr=0)
    with pytest.raises(ValueError, match=r"AdamW: weight_decay must be >= 0, got -0.1"):
        optim.AdamW(p, weight_decay=-0.1)
    with pytest.raises(ValueError, match=r"Adam: betas must be in \[0, 1\), got \(0.9, 1.0\)"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"Adam: got an empty parameter list"):
        optim.Adam([])
    opt = optim.SGD(p, lr=0.1)
    other = optim.SGD([nf.zeros(2, requires_grad=True), nf.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match=r"groups of sizes \[2\], this optimiser has \[1\]"):
        opt.load_state_dict(other.state_dict())


@pytest.mark.parametrize(("total", "pct"), [(10, 0.1), (2, 0.5), (20, 0.05), (1, 0.3), (5, 1.0), (5, 0.0), (100, 0.3)])
def test_one_cycle_is_defined_for_any_phase_lengths(total, pct):
    """Zero-length phases (pct_start * total_steps <= 1, or a warm-up that reaches the end)
    no longer divide by zero: the warm-up starts at max_lr, the annealing ends at min_lr; every
    lr lies in [min_lr, max_lr]; with proper phases it is PyTorch's schedule."""
    model = nn.Linear(2, 2)
    opt = optim.SGD(model.parameters(), lr=0.01)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=total, pct_start=pct)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(total - 1):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    low = 0.01 / 25 / 1e4
    assert all(low * (1 - 1e-9) <= lr <= 0.01 * (1 + 1e-9) for lr in lrs)
    if pct * total > 1 and pct * total < total:
        t_opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.01)
        t_sched = torch.optim.lr_scheduler.OneCycleLR(
            t_opt, max_lr=0.01, total_steps=total, pct_start=pct, cycle_momentum=False
        )
        expected = [t_opt.param_groups[0]["lr"]]
        for _ in range(total - 1):
            t_opt.step()
            t_sched.step()
            expected.append(t_opt.param_groups[0]["lr"])
        np.testing.assert_allclose(lrs, expected, rtol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total_steps": 0}, "total_steps must be a positive int"),
        ({"total_steps": 5, "pct_start": 1.5}, "pct_start must be in"),
    ],
)
def test_one_cycle_names_bad_arguments(kwargs, message):
    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.01)
    with pytest.raises(ValueError, match=message):
        optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, **kwargs)


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW])
def test_adam_keeps_two_moments_a_parameter_and_no_scratch(cls):
    model, _ = _pair(np.float32)
    opt = cls(model.parameters(), lr=0.01)
    model(nf.tensor(np.ones((2, 4), np.float32))).sum().backward()
    opt.step()
    kept = sum(a.nbytes for s in opt.state.values() for a in s.values() if isinstance(a, np.ndarray))
    assert kept == 2 * sum(p.numpy().nbytes for p in model.parameters())


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_updates_a_zero_dimensional_parameter_as_pytorch(name):
    ours, theirs, kw = OPTIMISERS[name]
    p, q = nn.Parameter(nf.tensor(1.5)), torch.nn.Parameter(torch.tensor(1.5, dtype=torch.float64))
    opt_p, opt_q = ours([p], **kw), theirs([q], **kw)
    for _ in range(3):
        opt_p.zero_grad(), opt_q.zero_grad()
        (p * p).backward(), (q * q).backward()
        opt_p.step(), opt_q.step()
    assert p.shape == () and abs(p.item() - q.item()) < 1e-6

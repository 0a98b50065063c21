"""Losses (functional and modules) against PyTorch over hypothesis shapes and options, float32
and float64: values and the gradients of input and target; a float64 gradcheck for each new
primitive; the edges (p = 0 or 1, huge logits, ignored targets, t = 0); PyTorch's legacy
``size_average``/``reduce``; the modules' buffers and state dicts; the errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numformer as nf
from helpers import LOOSE, check_parity, randn
from numformer import nn
from numformer.nn import functional as F
from numformer.testing import gradcheck

SEEDS = st.integers(0, 2**31 - 1)
DTYPES = st.sampled_from([np.float32, np.float64])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


def _both(fn_name, **kw):
    """(numformer's, PyTorch's) F.<fn_name> with keyword arguments ``kw`` (arrays given as numpy,
    passed to each framework as its own tensor)."""

    def convert(v, make):
        return make(v) if isinstance(v, np.ndarray) else v

    ours = lambda *a: getattr(F, fn_name)(*a, **{k: convert(v, nf.Tensor) for k, v in kw.items()})  # noqa: E731
    theirs = lambda *a: getattr(TF, fn_name)(*a, **{k: convert(v, torch.from_numpy) for k, v in kw.items()})  # noqa: E731
    return ours, theirs


@pytest.mark.parametrize("name", ["l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss"])
@settings(max_examples=15)
@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES, reduction=REDUCTIONS, data=st.data())
def test_regression_losses(name, seed, shape, dtype, reduction, data):
    """Values and both gradients; beta/delta across the differences' range; mse, l1 and huber
    with PyTorch's elementwise weight ("mean" over the weights' sum)."""
    a = randn(seed, shape) * 2
    b = randn(seed + 1, shape, away_from_zero=True) + a * 0  # differences away from 0 (|d|'s kink)
    kw = {"reduction": reduction}
    if name == "smooth_l1_loss":
        kw["beta"] = data.draw(st.sampled_from([0.0, 0.5, 2.0]))
    if name == "huber_loss":
        kw["delta"] = data.draw(st.sampled_from([0.5, 1.0, 3.0]))
    if name != "smooth_l1_loss" and data.draw(st.booleans()):
        kw["weight"] = (np.random.default_rng(seed).random(shape) + 0.5).astype(dtype)
    ours, theirs = _both(name, **kw)
    check_parity(ours, theirs, [a, b], dtype, loose=True)
    if dtype == np.float64:
        assert gradcheck(ours, [nf.Tensor(a, requires_grad=True), nf.Tensor(b, requires_grad=True)])


@settings(max_examples=15)
@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES, reduction=REDUCTIONS, weighted=st.booleans())
def test_binary_cross_entropy(seed, shape, dtype, reduction, weighted):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, shape)
    t = rng.random(shape)
    kw = {"reduction": reduction}
    if weighted:
        kw["weight"] = (rng.random(shape[-1:]) + 0.5).astype(dtype)  # broadcast over the rows
    ours, theirs = _both("binary_cross_entropy", **kw)
    check_parity(ours, theirs, [p, t], dtype, loose=True)
    if dtype == np.float64:
        assert gradcheck(ours, [nf.Tensor(p, requires_grad=True), nf.Tensor(t, requires_grad=True)])


@settings(max_examples=15)
@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES, reduction=REDUCTIONS, options=st.sampled_from(["", "w", "pw", "both"]))
def test_binary_cross_entropy_with_logits(seed, shape, dtype, reduction, options):
    rng = np.random.default_rng(seed)
    z = randn(seed, shape) * 4
    t = rng.random(shape)
    kw = {"reduction": reduction}
    if options in ("w", "both"):
        kw["weight"] = (rng.random(shape) + 0.5).astype(dtype)
    if options in ("pw", "both"):
        kw["pos_weight"] = (rng.random(shape[-1:]) * 3).astype(dtype)  # per class
    ours, theirs = _both("binary_cross_entropy_with_logits", **kw)
    check_parity(ours, theirs, [z, t], dtype, loose=True)
    if dtype == np.float64:
        assert gradcheck(ours, [nf.Tensor(z, requires_grad=True), nf.Tensor(t, requires_grad=True)])


@settings(max_examples=15)
@given(seed=SEEDS, dtype=DTYPES, log_target=st.booleans(), data=st.data())
def test_kl_div(seed, dtype, log_target, data):
    """batchmean (KL's definition), sum, none and mean (with PyTorch's warning); a target with
    zeros (0 log 0 = 0) and one broadcast along the batch."""
    rng = np.random.default_rng(seed)
    N, C = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 5))
    reduction = data.draw(st.sampled_from(["batchmean", "sum", "none", "mean"]))
    x = np.log(rng.dirichlet(np.ones(C), size=N))
    target = rng.dirichlet(np.ones(C), size=data.draw(st.sampled_from([N, 1])))
    if not log_target and data.draw(st.booleans()):
        target[..., 0] = 0.0
    if log_target:
        target = np.log(target)
    ours, theirs = _both("kl_div", reduction=reduction, log_target=log_target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "mean"'s, both frameworks
        check_parity(ours, theirs, [x, target], dtype, loose=True)
        zero_target = not log_target and (target == 0).any()
        if dtype == np.float64 and not zero_target:  # d/dt of t log t is -inf at t = 0
            assert gradcheck(ours, [nf.Tensor(x, requires_grad=True), nf.Tensor(target, requires_grad=True)])
    if reduction == "mean":
        with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
            ours(nf.Tensor(x), nf.Tensor(target))


@settings(max_examples=15)
@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_nll_loss_and_cross_entropy_as_its_composition(seed, dtype, data):
    """nll_loss over (N, C), (C,) and (N, C, d) with weights and ignored positions; and
    cross_entropy = nll_loss(log_softmax)."""
    rng = np.random.default_rng(seed)
    C = data.draw(st.integers(2, 5))
    layout = data.draw(st.sampled_from(["NC", "C", "NCd"]))
    N, d = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    shape = {"NC": (N, C), "C": (C,), "NCd": (N, C, d)}[layout]
    target = rng.integers(0, C, {"NC": (N,), "C": (), "NCd": (N, d)}[layout])
    if target.size > 1 and data.draw(st.booleans()):
        target.reshape(-1)[0] = -100
    reduction = data.draw(REDUCTIONS)
    weight = (rng.random(C) + 0.5).astype(dtype) if data.draw(st.booleans()) else None
    axis = 1 if len(shape) > 1 else 0
    logits = randn(seed, shape) * 2
    logp = logits - np.log(np.exp(logits).sum(axis=axis, keepdims=True))
    t_target, t_weight = torch.from_numpy(np.asarray(target)), None if weight is None else torch.from_numpy(weight)
    check_parity(
        lambda x: F.nll_loss(x, target, weight=weight, reduction=reduction),
        lambda x: TF.nll_loss(x, t_target, weight=t_weight, reduction=reduction),
        [logp],
        dtype,
        loose=True,
    )
    if dtype == np.float64:
        inputs = [nf.Tensor(logp, requires_grad=True)]
        assert gradcheck(lambda x: F.nll_loss(x, target, weight=weight, reduction=reduction), inputs)
        x = nf.Tensor(logits)
        composed = F.nll_loss(F.log_softmax(x, axis), target, weight=weight, reduction=reduction)
        direct = F.cross_entropy(x, target, weight=weight, reduction=reduction)
        np.testing.assert_allclose(composed.numpy(), direct.numpy(), **LOOSE[np.float64])


def test_edges_stay_finite_as_pytorchs():
    """BCE at p = 0 and 1 (logs clamped to -100, PyTorch's); BCE with logits of 1e4; all
    targets ignored (0, as numformer's cross_entropy: PyTorch gives NaN)."""
    p, t = np.array([0.0, 1.0, 0.5, 1.0]), np.array([0.5, 0.2, 1.0, 1.0])
    ours = F.binary_cross_entropy(nf.Tensor(p), nf.Tensor(t), reduction="none").numpy()
    np.testing.assert_allclose(ours, TF.binary_cross_entropy(torch.tensor(p), torch.tensor(t), reduction="none"))
    x = nf.Tensor(p, requires_grad=True)
    F.binary_cross_entropy(x, nf.Tensor(t)).backward()
    ref = torch.tensor(p, requires_grad=True)
    TF.binary_cross_entropy(ref, torch.tensor(t)).backward()
    np.testing.assert_allclose(x.grad.numpy(), ref.grad.numpy())  # (p - t) / max(p (1 - p), 1e-12)
    z = np.array([1e4, -1e4, 0.0], dtype=np.float32)
    zt = np.array([0.0, 1.0, 1.0], dtype=np.float32)
    check_parity(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, [z, zt], np.float32)
    x = nf.randn(3, 4, requires_grad=True)
    loss = F.nll_loss(x, np.array([-100, -100, -100]))
    loss.backward()
    assert loss.item() == 0.0 and not np.any(x.grad.numpy())


def test_float32_target_of_another_dtype_promotes_as_pytorch():
    a, b = randn(0, (3, 4), dtype=np.float32), randn(1, (3, 4), dtype=np.float64)
    for name in ("mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits"):
        ours = getattr(F, name)(nf.Tensor(a), nf.Tensor(b))
        ref = getattr(TF, name)(torch.from_numpy(a), torch.from_numpy(b))
        assert ours.dtype == np.float64 and str(ref.dtype) == "torch.float64", name
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-6)
    assert F.mse_loss(nf.Tensor(a), nf.tensor(np.arange(12).reshape(3, 4))).dtype == np.float32  # integer target


@pytest.mark.parametrize(("size_average", "reduce"), [(None, False), (False, None), (True, True), (False, True)])
def test_legacy_size_average_and_reduce(size_average, reduce):
    x, y = randn(0, (3, 4)), randn(1, (3, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = TF.mse_loss(torch.tensor(x), torch.tensor(y), size_average, reduce)
        t_module = torch.nn.L1Loss(size_average, reduce)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        ours = F.mse_loss(nf.Tensor(x), nf.Tensor(y), size_average, reduce)
    np.testing.assert_allclose(ours.numpy(), ref.numpy())
    with pytest.warns(UserWarning, match="size_average and reduce"):
        module = nn.L1Loss(size_average, reduce)
    assert module.reduction == t_module.reduction


MODULES = [
    ("CrossEntropyLoss", {"label_smoothing": 0.1, "ignore_index": 1}, "logits"),
    ("NLLLoss", {"reduction": "sum"}, "logp"),
    ("MSELoss", {}, "pair"),
    ("L1Loss", {"reduction": "none"}, "pair"),
    ("SmoothL1Loss", {"beta": 0.5}, "pair"),
    ("HuberLoss", {"delta": 0.5}, "pair"),
    ("BCELoss", {}, "probs"),
    ("BCEWithLogitsLoss", {}, "logits_pair"),
    ("KLDivLoss", {"reduction": "batchmean", "log_target": True}, "log_pair"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "kw", "kind"), MODULES, ids=[m for m, *_ in MODULES])
def test_loss_modules_match_torch(name, kw, kind, dtype):
    rng = np.random.default_rng(0)
    target = None
    if kind in ("logits", "logp"):
        x = randn(0, (4, 3)) * 2 if kind == "logits" else np.log(rng.dirichlet(np.ones(3), 4))
        target = np.array([0, 2, 1, 2])
        ours, theirs = getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw)
        check_parity(lambda a: ours(a, target), lambda a: theirs(a, torch.from_numpy(target)), [x], dtype, loose=True)
        return
    arrays = {
        "pair": [randn(0, (4, 3)), randn(1, (4, 3))],
        "probs": [rng.uniform(0.05, 0.95, (4, 3)), rng.random((4, 3))],
        "logits_pair": [randn(0, (4, 3)) * 3, rng.random((4, 3))],
        "log_pair": [np.log(rng.dirichlet(np.ones(3), 4)), np.log(rng.dirichlet(np.ones(3), 4))],
    }[kind]
    check_parity(getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw), arrays, dtype, loose=True)


def test_weighted_loss_modules_keep_their_weights_as_buffers():
    """As PyTorch's: ``weight`` and ``pos_weight`` are buffers (in the state dict, moved by .to)."""
    w, pw = nf.tensor([1.0, 2.0, 0.5]), nf.tensor([3.0, 1.0, 1.0])
    for module, t_module in (
        (nn.CrossEntropyLoss(weight=w), torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5]))),
        (nn.NLLLoss(weight=w), torch.nn.NLLLoss(weight=torch.tensor([1.0, 2.0, 0.5]))),
        (nn.BCELoss(weight=w), torch.nn.BCELoss(weight=torch.tensor([1.0, 2.0, 0.5]))),
        (
            nn.BCEWithLogitsLoss(weight=w, pos_weight=pw),
            torch.nn.BCEWithLogitsLoss(weight=torch.tensor([1.0, 2.0, 0.5]), pos_weight=torch.tensor([3.0, 1, 1])),
        ),
    ):
        assert list(module.state_dict()) == list(t_module.state_dict()), type(module).__name__
        assert module.weight is w and module.num_parameters() == 0
    logits, target = randn(0, (4, 3)).astype(np.float32), np.array([0, 2, 1, 0])
    loss = nn.CrossEntropyLoss(weight=w)(nf.Tensor(logits), target)
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5]))(
        torch.from_numpy(logits), torch.tensor(target)
    )
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-6)
    assert isinstance(nn.MSELoss(), nn.modules.loss._Loss)
    assert isinstance(nn.CrossEntropyLoss(), nn.modules.loss._WeightedLoss)
    assert repr(nn.L1Loss(reduction="sum")) == "L1Loss(reduction='sum')"


def test_a_loss_subclass_as_programs_write_them():
    """``class FocalLoss(_Loss)`` with PyTorch's base-class arguments."""
    from numformer.nn.modules.loss import _Loss

    class Focal(_Loss):
        def __init__(self, gamma=2.0, reduction="mean"):
            super().__init__(reduction=reduction)
            self.gamma = gamma

        def forward(self, input, target):
            """Shape: ``(N, C)`` logits, ``(N,)`` classes -> ``()``."""
            logp = F.log_softmax(input, dim=-1)
            picked = (logp * F.one_hot(target, input.shape[-1]).to(logp.dtype)).sum(-1)
            return (-((1 - picked.exp()) ** self.gamma) * picked).mean()

    x = nf.randn(5, 3, requires_grad=True)
    Focal()(x, nf.tensor([0, 1, 2, 1, 0])).backward()
    assert x.grad.shape == (5, 3)


def test_bad_loss_arguments_get_one_clear_error():
    x = nf.randn(2, 3)
    with pytest.raises(ValueError, match=r"l1_loss: input shape \(2, 3\) and target shape \(3,\) differ"):
        F.l1_loss(x, nf.randn(3))
    with pytest.raises(ValueError, match=r"kl_div: reduction must be one of .*'batchmean'.*got 'avg'"):
        F.kl_div(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input must hold probabilities in \[0, 1\]"):
        F.binary_cross_entropy(nf.tensor([1.5, 0.2]), nf.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(2,\) must broadcast to input's shape \(2, 3\)"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=nf.ones(2))
    with pytest.raises(ValueError, match=r"mse_loss: weight must have input's shape \(2, 3\), got \(3,\)"):
        F.mse_loss(x, x, weight=nf.ones(3))
    with pytest.raises(ValueError, match=r"nll_loss: weight must have shape \(3,\) \(one per class\), got \(2,\)"):
        F.nll_loss(x, np.array([0, 1]), weight=nf.ones(2))
    with pytest.raises(IndexError, match=r"nll_loss: target values must be in \[0, 3\) or ignore_index=-100, got 3"):
        F.nll_loss(x, np.array([0, 3]))
    with pytest.raises(TypeError, match="nll_loss: target must hold integer class indices, got dtype float32"):
        F.nll_loss(x, nf.randn(2))
    with pytest.raises(ValueError, match="huber_loss: delta must be > 0, got 0"):
        F.huber_loss(x, x, delta=0)
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must be >= 0, got -1"):
        F.smooth_l1_loss(x, x, beta=-1)
    with pytest.raises(ValueError, match=r"kl_div: input shape \(2, 3\) and target shape \(4,\) do not broadcast"):
        F.kl_div(x, nf.randn(4), reduction="sum")

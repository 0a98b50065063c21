"""Fused ops in numformer.nn.functional: PyTorch parity over random shapes and options,
float64 gradchecks, numerics at extreme inputs, and the errors bad input gets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numformer as nf
from helpers import LOOSE, check_parity, randn
from numformer.nn import functional as F
from numformer.ops import attention as attention_ops
from numformer.ops._threads import num_threads
from numformer.testing import gradcheck

SEEDS = st.integers(0, 2**31 - 1)
DTYPES = st.sampled_from([np.float32, np.float64])
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5)


# --- linear (the fused x W^T + b kernel) -----------------------------------------------------


@given(seed=SEEDS, dtype=DTYPES, bias=st.booleans(), lead=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
def test_linear_parity_and_gradcheck(seed, dtype, bias, lead):
    arrays = [randn(seed, lead + (5,)), randn(seed + 1, (3, 5))] + ([randn(seed + 2, (3,))] if bias else [])
    check_parity(F.linear, TF.linear, arrays, dtype, loose=True)
    assert gradcheck(F.linear, [nf.Tensor(a, requires_grad=True) for a in arrays])


@given(seed=SEEDS, dtype=DTYPES, bias=st.booleans(), lead=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))
def test_linear_relu_parity_and_gradcheck(seed, dtype, bias, lead):
    """relu(x W^T + b) in one kernel, over 1 row, the skinny (2-32 rows) and the wide path."""
    arrays = [randn(seed, lead + (5,)), randn(seed + 1, (3, 5))] + ([randn(seed + 2, (3,))] if bias else [])
    check_parity(F.linear_relu, lambda *a: torch.relu(TF.linear(*a)), arrays, dtype, loose=True)
    check_parity(F.linear_relu, lambda *a: torch.relu(TF.linear(*a)), arrays, dtype, grad=False, loose=True)
    assert gradcheck(F.linear_relu, [nf.Tensor(a, requires_grad=True) for a in arrays])


FUSED = {  # name: (the fused call, the two calls it stands for)
    "relu": (F.linear_relu, lambda *a: F.relu(F.linear(*a))),
    "gelu": (F.linear_gelu, lambda *a: F.gelu(F.linear(*a))),
    "gelu_tanh": (
        lambda *a: F.linear_gelu(*a, approximate="tanh"),
        lambda *a: F.gelu(F.linear(*a), approximate="tanh"),
    ),
}


@pytest.mark.parametrize("activation", list(FUSED))
def test_linear_with_activation_on_threads_equals_the_two_calls_bit_for_bit(activation):
    """Each thread's activation of its rows (or columns, or skinny blocks) of the product, and
    what backward keeps, give exactly the two calls' values and gradients; so does inference;
    a NaN input stays NaN, in its own row."""
    fused_call, plain_call = FUSED[activation]
    x = randn(0, (600, 128), dtype=np.float32)
    x[3, 5] = np.nan
    w, b = randn(1, (120, 128), dtype=np.float32), randn(2, (120,), dtype=np.float32)
    cases = [
        (x, w, b),  # 9.2M multiply-adds, more rows than columns: split by rows
        (randn(3, (40, 128), dtype=np.float32), randn(4, (2000, 128), dtype=np.float32), None),  # by columns
        (randn(5, (4, 128), dtype=np.float32), randn(6, (4096, 128), dtype=np.float32), None),  # skinny blocks
    ]
    with num_threads(2):
        for args in cases:
            args = [a for a in args if a is not None]
            fused_in = [nf.Tensor(a.copy(), requires_grad=True) for a in args]
            plain_in = [nf.Tensor(a.copy(), requires_grad=True) for a in args]
            fused, plain = fused_call(*fused_in), plain_call(*plain_in)
            np.testing.assert_array_equal(fused.numpy(), plain.numpy())
            g = randn(7, fused.shape, dtype=np.float32)
            fused.backward(g)
            plain.backward(g)
            for a, c in zip(fused_in, plain_in):
                np.testing.assert_array_equal(a.grad, c.grad)
            with nf.no_grad():  # inference may take another GEMM path (BLAS's threads): against its own
                inferred = fused_call(*[nf.Tensor(a) for a in args])
                expected = plain_call(*[nf.Tensor(a) for a in args])
            np.testing.assert_array_equal(inferred.numpy(), expected.numpy())
        out = fused_call(nf.Tensor(x), nf.Tensor(w), nf.Tensor(b)).numpy()
    assert np.isnan(out[3]).all() and not np.isnan(np.delete(out, 3, axis=0)).any()


@given(
    seed=SEEDS,
    dtype=DTYPES,
    bias=st.booleans(),
    approximate=st.sampled_from(["none", "tanh"]),
    lead=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
)
def test_linear_gelu_parity_and_gradcheck(seed, dtype, bias, approximate, lead):
    """gelu(x W^T + b) in one kernel, over 1 row, the skinny (2-32 rows) and the wide path."""
    arrays = [randn(seed, lead + (5,)), randn(seed + 1, (3, 5))] + ([randn(seed + 2, (3,))] if bias else [])

    def ours(*a):
        return F.linear_gelu(*a, approximate=approximate)

    def theirs(*a):
        return TF.gelu(TF.linear(*a), approximate=approximate)

    check_parity(ours, theirs, arrays, dtype, loose=True)
    check_parity(ours, theirs, arrays, dtype, grad=False, loose=True)
    assert gradcheck(ours, [nf.Tensor(a, requires_grad=True) for a in arrays])


def test_linear_then_fuses_plain_layers_and_keeps_hooks_and_subclasses():
    """``linear_then`` runs one fused node for a plain Linear and ReLU/GELU; with a hook on either
    module, a Linear subclass with its own forward, or a forward set on the instance, the two
    modules run as written."""
    from numformer.nn.layers import linear_then
    from numformer.ops.linalg import Linear as LinearOp

    class Scaled(nf.nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2.0

    x = nf.Tensor(randn(0, (6, 4), dtype=np.float32), requires_grad=True)
    for activation in (nf.nn.ReLU(), nf.nn.GELU(), nf.nn.GELU(approximate="tanh")):
        linear = nf.nn.Linear(4, 3)
        fused = linear_then(linear, activation, x)
        assert isinstance(fused.grad_fn, LinearOp)  # one node: the activation ran inside it
        np.testing.assert_allclose(fused.numpy(), activation(linear(x)).numpy(), rtol=1e-6, atol=1e-7)
        seen = []
        handle = activation.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o))
        linear_then(linear, activation, x)
        handle.remove()
        assert len(seen) == 1  # the activation ran as a module, its hook saw its output
        scaled = Scaled(4, 3)
        np.testing.assert_array_equal(linear_then(scaled, activation, x).numpy(), activation(scaled(x)).numpy())
        handle = linear.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o))
        linear_then(linear, activation, x)
        handle.remove()
        assert len(seen) == 2  # the linear layer ran as a module too
        original = linear.forward
        linear.forward = lambda x, original=original: original(x) * 0.0  # an adapter's own forward
        np.testing.assert_array_equal(linear_then(linear, activation, x).numpy(), activation(linear(x)).numpy())
        assert not np.any(linear_then(linear, activation, x).numpy())


@pytest.mark.parametrize("call", [F.linear, F.linear_relu, F.linear_gelu])
def test_a_linear_bias_of_another_shape_or_dtype_is_named(call):
    x, w = nf.Tensor(np.ones((2, 3), np.float32)), nf.Tensor(np.ones((4, 3), np.float32))
    name = call.__name__
    with pytest.raises(ValueError, match=rf"{name}: bias must have shape \(4,\), got \(3,\)"):
        call(x, w, nf.Tensor(np.ones(3, np.float32)))
    with pytest.raises(TypeError, match=rf"{name}: bias dtype float64 and weight dtype float32 differ"):
        call(x, w, nf.Tensor(np.ones(4)))
    assert call(x, w, nf.Tensor(np.ones(1, np.float32))).shape == (2, 4)  # broadcast, as PyTorch's


def test_linear_gelu_errors_name_the_function():
    with pytest.raises(ValueError, match=r"linear_gelu: input's last dim \(4,\) must equal weight's in_features"):
        F.linear_gelu(nf.Tensor(np.ones((2, 4))), nf.Tensor(np.ones((3, 5))))
    with pytest.raises(ValueError, match=r"linear_gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        F.linear_gelu(nf.Tensor(np.ones((2, 5))), nf.Tensor(np.ones((3, 5))), approximate="erf")


def test_linear_relu_errors_name_the_function():
    with pytest.raises(ValueError, match=r"linear_relu: input's last dim \(4,\) must equal weight's in_features"):
        F.linear_relu(nf.Tensor(np.ones((2, 4))), nf.Tensor(np.ones((3, 5))))
    with pytest.raises(TypeError, match=r"linear_relu: input dtype float32 and weight dtype float64 differ"):
        F.linear_relu(nf.Tensor(np.ones((2, 5), np.float32)), nf.Tensor(np.ones((3, 5))))


# --- softmax / log_softmax -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES, data=st.data())
def test_softmax_parity(name, seed, shape, dtype, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = randn(seed, shape) * 3
    check_parity(lambda t: getattr(F, name)(t, dim), lambda t: getattr(TF, name)(t, dim), [x], dtype)
    assert gradcheck(lambda t: getattr(F, name)(t, dim), [nf.Tensor(x, requires_grad=True)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_cross_entropy_finite_for_huge_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    t = nf.Tensor(x, requires_grad=True)
    s = F.softmax(t, -1)
    loss = F.cross_entropy(t, np.array([1, 2]))
    loss.backward()
    assert np.isfinite(s.numpy()).all() and np.isfinite(loss.numpy()) and np.isfinite(t.grad).all()
    ref = TF.cross_entropy(torch.tensor(x), torch.tensor([1, 2]))
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-6)
    assert np.isfinite(F.log_softmax(nf.Tensor(x), -1).numpy()).all()


@pytest.mark.parametrize("name", ["relu", "gelu", "tanh", "sigmoid"])
def test_activations_propagate_nan_like_torch(name):
    x = np.array([np.nan, -1.0, 2.0], dtype=np.float32)
    ours = getattr(F, name)(nf.Tensor(x)).numpy()
    ref = getattr(TF, name)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_allclose(ours[1:], ref[1:], rtol=1e-6)


def test_softmax_row_of_minus_inf_gives_zeros():
    x = nf.Tensor(np.array([[-np.inf, -np.inf], [0.0, -np.inf]]), requires_grad=True)
    y = F.softmax(x, -1)
    np.testing.assert_array_equal(y.numpy(), [[0.0, 0.0], [1.0, 0.0]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((2, 2)))


# --- layer_norm ------------------------------------------------------------------------------


@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES, data=st.data())
def test_layer_norm_parity(seed, shape, dtype, data):
    k = data.draw(st.integers(1, len(shape)))
    affine = data.draw(st.sampled_from(["both", "weight", "none"]))
    norm_shape = shape[len(shape) - k :]
    # With 1 or 2 elements xhat is 0 or +-1 whatever x is: the input gradient is ~0 (through eps
    # only), so float32 cancellation noise dominates both frameworks' answers.
    assume(np.prod(norm_shape) > 2)
    x = randn(seed, shape) * 2 + 1
    arrays = [x]
    if affine in ("both", "weight"):
        arrays.append(randn(seed + 1, norm_shape))
    if affine == "both":
        arrays.append(randn(seed + 2, norm_shape))

    def nf_fn(*a):
        return F.layer_norm(a[0], norm_shape, *a[1:], eps=1e-5)

    def torch_fn(*a):
        return TF.layer_norm(a[0], norm_shape, *a[1:], eps=1e-5)

    check_parity(nf_fn, torch_fn, arrays, dtype, loose=True)
    # inference (no gradient to keep): small inputs take a shorter path; same values as torch
    check_parity(nf_fn, torch_fn, arrays, dtype, grad=False, loose=True)
    inputs = [nf.Tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(nf_fn, inputs, atol=1e-5)


@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES, data=st.data())
def test_add_layer_norm_parity(seed, shape, dtype, data):
    """F.add_layer_norm(x, r) is layer_norm(x + r) in one kernel: values and both gradients."""
    k = data.draw(st.integers(1, len(shape)))
    affine = data.draw(st.booleans())
    norm_shape = shape[len(shape) - k :]
    assume(np.prod(norm_shape) > 2)  # see test_layer_norm_parity
    arrays = [randn(seed, shape) * 2 + 1, randn(seed + 3, shape)]
    if affine:
        arrays += [randn(seed + 1, norm_shape), randn(seed + 2, norm_shape)]

    def nf_fn(*a):
        return F.add_layer_norm(a[0], a[1], norm_shape, *a[2:], eps=1e-5)

    def torch_fn(*a):
        return TF.layer_norm(a[0] + a[1], norm_shape, *a[2:], eps=1e-5)

    check_parity(nf_fn, torch_fn, arrays, dtype, loose=True)
    check_parity(nf_fn, torch_fn, arrays, dtype, grad=False, loose=True)
    inputs = [nf.Tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(nf_fn, inputs, atol=1e-5)


def test_add_and_norm_module_method_and_its_errors():
    norm = nf.nn.LayerNorm(6)
    x, r = nf.randn(4, 6), nf.randn(4, 6)
    np.testing.assert_allclose(norm.add_and_norm(x, r).numpy(), norm(x + r).numpy(), rtol=1e-6, atol=1e-6)
    seen = []
    norm.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    norm.add_and_norm(x, r)  # with a hook it is the plain call: the hook sees the sum
    np.testing.assert_array_equal(seen[0].numpy(), (x + r).numpy())
    bias = nf.randn(6)  # would broadcast: the plain call too
    np.testing.assert_array_equal(norm.add_and_norm(x, bias).numpy(), norm(x + bias).numpy())
    with pytest.raises(ValueError, match=r"add_layer_norm: residual must match input's shape \(4, 6\)"):
        F.add_layer_norm(x, bias, (6,))
    with pytest.raises(ValueError, match=r"add_layer_norm: input shape \(4, 6\) must end with"):
        F.add_layer_norm(x, r, (4,))


# --- dropout ---------------------------------------------------------------------------------


def test_dropout_statistics_and_backward():
    nf.manual_seed(1)
    x = nf.ones(200, 500, requires_grad=True)
    y = F.dropout(x, p=0.3, training=True)
    zero_fraction = float((y.numpy() == 0).mean())
    assert abs(zero_fraction - 0.3) < 0.01
    assert abs(float(y.numpy().mean()) - 1.0) < 0.02  # inverted dropout keeps the mean
    kept = y.numpy() != 0
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad != 0, kept)  # same mask in backward
    assert y.dtype == np.float32


def test_dropout_identity_in_eval_and_reproducible_with_seed():
    x = nf.randn(4, 5)
    assert F.dropout(x, 0.5, training=False) is x
    nf.manual_seed(7)
    a = F.dropout(x, 0.5).numpy()
    nf.manual_seed(7)
    b = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), np.zeros((4, 5)))


def test_dropout_gradcheck():
    x = nf.Tensor(randn(0, (3, 4)), requires_grad=True)

    def fn(t):
        nf.manual_seed(3)  # same mask for every evaluation
        return F.dropout(t, 0.4)

    assert gradcheck(fn, [x])


# --- embedding -------------------------------------------------------------------------------


@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_embedding_parity(seed, dtype, data):
    n, e = data.draw(st.integers(2, 6)), data.draw(st.integers(1, 4))
    idx_shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    idx = np.random.default_rng(seed).integers(0, n, idx_shape)
    pad = data.draw(st.one_of(st.none(), st.integers(0, n - 1)))
    w = randn(seed, (n, e))
    check_parity(
        lambda t: F.embedding(idx, t, padding_idx=pad),
        lambda t: TF.embedding(torch.from_numpy(idx), t, padding_idx=pad),
        [w],
        dtype,
    )
    # padding_idx's row gets no gradient by definition, so the calculus check runs without it.
    assert gradcheck(lambda t: F.embedding(idx, t), [nf.Tensor(w, requires_grad=True)])


# --- cross_entropy ---------------------------------------------------------------------------


@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_cross_entropy_parity(seed, dtype, data):
    rng = np.random.default_rng(seed)
    C = data.draw(st.integers(2, 6))
    layout = data.draw(st.sampled_from(["NC", "C", "NCd"]))
    N, d = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3))
    shape = {"NC": (N, C), "C": (C,), "NCd": (N, C, d)}[layout]
    target_shape = {"NC": (N,), "C": (), "NCd": (N, d)}[layout]
    soft = data.draw(st.booleans())
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))
    smoothing = data.draw(st.sampled_from([0.0, 0.1, 0.5]))
    use_weight = data.draw(st.booleans())
    logits = randn(seed, shape) * 3
    if soft:
        target = rng.random(shape)
        target = (target / target.sum(axis=1 if len(shape) > 1 else 0, keepdims=True)).astype(dtype)
        t_target = torch.from_numpy(target)
    else:
        target = rng.integers(0, C, target_shape)
        if target.size > 1 and data.draw(st.booleans()):
            target.reshape(-1)[0] = -100  # an ignored position
        t_target = torch.from_numpy(np.asarray(target))
    weight = (rng.random(C) + 0.5).astype(dtype) if use_weight else None
    t_weight = torch.from_numpy(weight) if use_weight else None
    kw = {"reduction": reduction, "label_smoothing": smoothing}
    check_parity(
        lambda t: F.cross_entropy(t, target, weight=weight, **kw),
        lambda t: TF.cross_entropy(t, t_target, weight=t_weight, **kw),
        [logits],
        dtype,
        loose=True,
    )
    if dtype == np.float64:
        assert gradcheck(
            lambda t: F.cross_entropy(t, target, weight=weight, **kw), [nf.Tensor(logits, requires_grad=True)]
        )


def test_cross_entropy_float_class_indices_get_one_clear_error():
    """A float target of the batch's shape is read as probabilities of the wrong shape: PyTorch
    raises a RuntimeError there, and the message says class indices must be integers."""
    with pytest.raises(RuntimeError, match=r"must have input's shape \(8, 4\), got \(8,\) \(class indices must be"):
        F.cross_entropy(nf.randn(8, 4), np.zeros(8, np.float32))


def test_cross_entropy_all_ignored_gives_zero_not_nan():
    x = nf.randn(3, 4, requires_grad=True)
    loss = F.cross_entropy(x, np.array([-100, -100, -100]))
    loss.backward()
    assert loss.item() == 0.0 and not np.any(x.grad.numpy())


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_cross_entropy_ignored_row_is_zero_whatever_its_logits(smoothing, reduction):
    """As PyTorch: an ignored row adds 0 even where its logits are inf or NaN (0 * inf was NaN)."""
    x = np.array([[np.inf, 0, 0], [1, 2, 3], [np.nan, -np.inf, 1]], np.float32)
    target = np.array([-100, 0, -100])
    ours = F.cross_entropy(nf.Tensor(x), target, reduction=reduction, label_smoothing=smoothing).numpy()
    theirs = TF.cross_entropy(
        torch.from_numpy(x), torch.from_numpy(target), reduction=reduction, label_smoothing=smoothing
    )
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6)


# --- mse_loss --------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES)
def test_mse_parity(reduction, seed, shape, dtype):
    a, b = randn(seed, shape), randn(seed + 1, shape)
    check_parity(
        lambda x, y: F.mse_loss(x, y, reduction=reduction),
        lambda x, y: TF.mse_loss(x, y, reduction=reduction),
        [a, b],
        dtype,
        loose=True,
    )
    assert gradcheck(
        lambda x, y: F.mse_loss(x, y, reduction=reduction),
        [nf.Tensor(a, requires_grad=True), nf.Tensor(b, requires_grad=True)],
    )


# --- scaled_dot_product_attention ------------------------------------------------------------


def _attention_case(data, seed):
    batch = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
    L, S = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    E, Ev = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    q = randn(seed, batch + (L, E))
    k = randn(seed + 1, batch + (S, E))
    v = randn(seed + 2, batch + (S, Ev))
    mask_kind = data.draw(st.sampled_from(["none", "bool", "float", "causal", "key_row"]))
    rng = np.random.default_rng(seed)
    mask = None
    if mask_kind == "bool":
        mask = rng.random(batch + (L, S)) > 0.3
        mask[..., 0] = True  # keep at least one key per query (fully-masked rows tested apart)
    elif mask_kind == "float":
        mask = rng.standard_normal((L, S))
    elif mask_kind == "key_row":
        mask = rng.random((1, S)) > 0.3
        mask[..., 0] = True
    causal = mask_kind == "causal"
    scale = data.draw(st.sampled_from([None, 0.3]))
    return q, k, v, mask, causal, scale


@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_attention_parity(seed, dtype, data):
    q, k, v, mask, causal, scale = _attention_case(data, seed)
    if causal and q.shape[-2] > k.shape[-2]:
        k = np.concatenate([k] * q.shape[-2], axis=-2)[..., : q.shape[-2], :]
        v = np.concatenate([v] * q.shape[-2], axis=-2)[..., : q.shape[-2], :]
    nf_mask = None if mask is None else mask.astype(dtype) if mask.dtype != bool else mask
    t_mask = None if nf_mask is None else torch.from_numpy(nf_mask)

    def nf_fn(a, b, c):
        return F.scaled_dot_product_attention(a, b, c, attn_mask=nf_mask, is_causal=causal, scale=scale)

    def torch_fn(a, b, c):
        return TF.scaled_dot_product_attention(a, b, c, attn_mask=t_mask, is_causal=causal, scale=scale)

    check_parity(nf_fn, torch_fn, [q, k, v], dtype, loose=True)
    check_parity(nf_fn, torch_fn, [q, k, v], dtype, grad=False, loose=True)  # the inference path
    if dtype == np.float64:
        inputs = [nf.Tensor(a, requires_grad=True) for a in (q, k, v)]
        assert gradcheck(nf_fn, inputs)


# each mask shape torch broadcasts over (N, H, L, S): one head for all (the decoders' padding
# mask), one per head, one for the batch, and none
GQA_MASKS = ["N1LS", "NHLS", "1HLS", "HLS", "LS", None]


@settings(max_examples=20, deadline=None)
@given(
    seed=SEEDS,
    dtype=DTYPES,
    mask=st.sampled_from(GQA_MASKS),
    boolean=st.booleans(),
    N=st.integers(1, 3),
    K=st.integers(1, 3),
    G=st.integers(2, 3),
    L=st.integers(1, 4),
    S=st.integers(1, 5),
)
def test_grouped_query_attention_parity_with_every_mask_shape(seed, dtype, mask, boolean, N, K, G, L, S):
    """enable_gqa against torch's, values and gradients, for masks of every shape that
    broadcasts to (N, H, L, S); a (N, 1, L, S) mask once lined its batch up with the key heads
    (wrong values when N == K, an error otherwise)."""
    H = K * G
    r = np.random.default_rng(seed)
    q, k, v = (r.standard_normal(shape) for shape in ((N, H, L, 8), (N, K, S, 8), (N, K, S, 6)))
    m = None
    if mask is not None:
        sizes = {"N": N, "H": H, "L": L, "S": S, "1": 1}
        m = r.random(tuple(sizes[c] for c in mask)) < 0.6
        m[..., 0] = True  # every query sees a key (torch gives NaN otherwise)
        m = m if boolean else np.where(m, 0.0, -1e9).astype(dtype)

    def nf_fn(a, b, c):
        return F.scaled_dot_product_attention(a, b, c, attn_mask=m, enable_gqa=True)

    def torch_fn(a, b, c):
        return TF.scaled_dot_product_attention(
            a, b, c, attn_mask=None if m is None else torch.from_numpy(m), enable_gqa=True
        )

    check_parity(nf_fn, torch_fn, [q, k, v], dtype, loose=True)
    check_parity(nf_fn, torch_fn, [q, k, v], dtype, grad=False, loose=True)  # the inference path
    with F.attention_kernel("blocked", block_q=2, block_k=2):  # the flash kernel's tiles
        check_parity(nf_fn, torch_fn, [q, k, v], dtype, loose=True)
    if dtype == np.float64 and seed % 4 == 0:
        inputs = [nf.Tensor(a, requires_grad=True) for a in (q, k, v)]
        assert gradcheck(nf_fn, inputs)


def test_grouped_query_attention_refuses_a_mask_with_another_number_of_heads():
    q, kv = nf.randn(2, 4, 3, 8), nf.randn(2, 2, 3, 8)
    with pytest.raises(
        ValueError,
        match=r"attn_mask's heads dim \(-3\) must be 1 or query's heads 4, got attn_mask of shape \(2, 2, 3, 3\)",
    ):
        F.scaled_dot_product_attention(q, kv, kv, attn_mask=np.ones((2, 2, 3, 3), dtype=bool), enable_gqa=True)


def _mixed_rows(q, seed):
    """q with its rows scaled by 1, 12 or 60 at random: with unit-scale keys, rows whose scores
    stay small (shift 0), rows shifted by a bound, and rows whose bounds are loose."""
    factor = np.random.default_rng(seed).choice(np.array([1, 12, 60], dtype=q.dtype), q.shape[:-1] + (1,))
    return q * factor


@given(seed=SEEDS, causal=st.booleans(), data=st.data())
def test_attention_score_shift_keeps_each_rows_largest_term_in_range(seed, causal, data):
    """The invariant the shift promises: for every row that is not loose, the largest shifted
    score it sees lies in [-SHIFT_SLACK, EXP_CEILING], so exp neither overflows nor loses the row;
    rows whose scores are all small get no shift at all. Over queries scaled from 0.01x to 100x."""
    q, k, _, _, _, scale = _attention_case(data, seed)
    scale = scale or q.shape[-1] ** -0.5
    rows = q.shape[:-1] + (1,)
    q = q * np.exp(np.random.default_rng(seed).uniform(np.log(0.01), np.log(100), rows)).astype(q.dtype)
    qs = q * q.dtype.type(scale)
    L, S = q.shape[-2], k.shape[-2]
    shift, loose = attention_ops._score_shift(qs, k, causal)
    s = qs @ np.swapaxes(k, -1, -2)
    if causal:
        s = np.where(np.tri(L, S, dtype=bool), s, -np.inf)
    top = s.max(-1, keepdims=True)
    shift = np.zeros(top.shape, q.dtype) if shift is None else np.broadcast_to(shift, top.shape)
    loose = np.zeros(top.shape, bool) if loose is None else np.broadcast_to(loose, top.shape)
    assert (shift >= 0).all() and (shift[loose] == 0).all()
    tight = ~loose
    margin = 1e-3 * (1 + np.abs(top[tight]))  # the bounds are computed in the inputs' precision
    assert (top[tight] - shift[tight] <= attention_ops.EXP_CEILING + margin).all()
    assert (top[tight] - shift[tight] >= -attention_ops.SHIFT_SLACK - margin).all()
    # rows whose Cauchy-Schwarz bound (over all keys, >= the causal one) is within the ceiling
    bound = np.linalg.norm(qs, axis=-1, keepdims=True) * np.linalg.norm(k, axis=-1).max()
    unshifted = bound <= attention_ops.EXP_CEILING
    assert (shift[np.broadcast_to(unshifted, top.shape)] == 0).all()


@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_attention_score_shift_matches_the_row_max(seed, dtype, data):
    """Softmax shifts each row by a bound of its max instead of the max, and rows whose bounds
    are loose (here: scaled-up queries) subtract their max after all: the same values and
    gradients as PyTorch, and as numformer with the shift turned off, to round-off."""
    q, k, v, _, _, scale = _attention_case(data, seed)
    causal = data.draw(st.booleans())
    mixed = data.draw(st.booleans())
    if mixed:
        q = _mixed_rows(q, seed)
    # dS = P (dP - D) cancels: D = rowsum(dO O) and dP = dO V^T agree in exact arithmetic but are
    # rounded differently (how, depends on the BLAS kernels), and dK = scale dS^T Q carries that
    # round-off times |q|, here up to 60x (with one key PyTorch's dK came out exactly 0).
    factor = 60.0 if mixed else 1.0

    def nf_fn(a, b, c):
        return F.scaled_dot_product_attention(a, b, c, is_causal=causal, scale=scale)

    def torch_fn(a, b, c):
        return TF.scaled_dot_product_attention(a, b, c, is_causal=causal, scale=scale)

    shifted, _ = check_parity(nf_fn, torch_fn, [q, k, v], dtype, loose=True, grad_atol_factor=factor)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(attention_ops, "SHIFT_SLACK", -np.inf)  # every row loose: plain row max
        exact, _ = check_parity(nf_fn, torch_fn, [q, k, v], dtype, loose=True, grad_atol_factor=factor)
        exact_out = nf_fn(*exact).numpy()
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    np.testing.assert_allclose(nf_fn(*shifted).numpy(), exact_out, **tol)
    for a, b in zip(shifted, exact):  # gradients cancel (q up to 60x): PyTorch parity's tolerance
        np.testing.assert_allclose(a.grad, b.grad, **LOOSE[dtype])


@pytest.mark.parametrize(
    "shapes",
    [((3, 4), (2, 5, 4)), ((2, 1, 6, 4), (2, 3, 5, 4)), ((2, 3, 6, 4), (2, 1, 5, 4)), ((4, 1, 128, 8), (4, 8, 128, 8))],
)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_score_shift_with_broadcast_batches(shapes, causal):
    """Queries shared across the keys' heads and keys shared across the queries' heads, through
    the training path and (the large case) the unnormalised inference path, on 2 threads."""
    q_shape, k_shape = shapes
    arrays = [randn(0, q_shape) * 2, randn(1, k_shape) * 2, randn(2, k_shape)]
    with num_threads(2):
        for grad in (True, False):
            check_parity(
                lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal),
                lambda a, b, c: TF.scaled_dot_product_attention(a, b, c, is_causal=causal),
                arrays,
                np.float32,
                grad=grad,
                loose=True,
            )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mixed", [False, True])
def test_attention_score_shift_on_the_inference_path(causal, mixed):
    """Large inference inputs take the path that never normalises the (L, S) matrix:
    out = (exp(s - shift) V) / rowsum. Same values as PyTorch, with all rows unshifted, or
    unshifted, shifted and loose rows mixed."""
    q, k, v = (randn(i, (2, 4, 128, 8), dtype=np.float32) for i in range(3))
    q = _mixed_rows(q, 3) if mixed else q
    shift, loose = attention_ops._score_shift(q * np.float32(8**-0.5), k, causal)
    kinds = (shift is not None and (shift > 0).any(), loose is not None, shift is None or (shift == 0).any())
    assert kinds == ((True, True, True) if mixed else (False, False, True))
    check_parity(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal),
        lambda a, b, c: TF.scaled_dot_product_attention(a, b, c, is_causal=causal),
        [q, k, v],
        np.float32,
        grad=False,
        loose=True,
    )


def test_attention_inference_normalises_when_unnormalised_sums_would_overflow():
    """Scores up to ~29 are not shifted, so exp(s) reaches ~e^29 and E V with values of 1e27
    overflows float32 (e^29 1e27 > 3.4e38): the inference path sees it and computes P V instead, as PyTorch does."""
    rng = np.random.default_rng(0)
    k = rng.standard_normal((1, 8, 128, 8)).astype(np.float32)  # large enough for that path
    k /= np.linalg.norm(k, axis=-1, keepdims=True)  # unit keys: the bound is |q| / sqrt(8)
    q = (k[..., :1, :] * np.float32(29 * 8**0.5)).repeat(128, axis=-2)  # first key's score: 29
    v = (rng.standard_normal((1, 8, 128, 4)) * 1e27).astype(np.float32)
    shift, loose = attention_ops._score_shift(q * np.float32(8**-0.5), k, False)
    assert shift is None and loose is None
    check_parity(
        F.scaled_dot_product_attention, TF.scaled_dot_product_attention, [q, k, v], np.float32, grad=False, loose=True
    )


@pytest.mark.parametrize("grad", [False, True])
def test_attention_rows_depend_only_on_what_they_see(grad):
    """Each row's shift comes from its own query and the keys it sees: changing a later key
    leaves earlier causal rows bit for bit the same, and changing one batch item leaves the
    others, with loose and tight rows mixed (inference and training paths)."""
    shape = (2, 4, 128, 8) if not grad else (2, 3, 9, 4)
    q, k, v = _mixed_rows(randn(0, shape), 1), randn(1, shape), randn(2, shape)
    late = shape[-2] * 2 // 3

    def attend(k, v, causal=True):
        inputs = [nf.Tensor(a, requires_grad=grad) for a in (q, k, v)]
        return F.scaled_dot_product_attention(*inputs, is_causal=causal).numpy()

    base = attend(k, v)
    k2, v2 = k.copy(), v.copy()
    k2[..., late, :] *= 50
    v2[..., late, :] += 1
    np.testing.assert_array_equal(attend(k2, v2)[..., :late, :], base[..., :late, :])
    k3 = k.copy()
    k3[1] *= 50
    np.testing.assert_array_equal(attend(k3, v, causal=False)[0], attend(k, v, causal=False)[0])


@given(seed=SEEDS, dtype=DTYPES, L=st.integers(1, 3), S=st.integers(1, 40), offset=st.sampled_from([0.0, 200.0]))
def test_attention_small_inference_path_without_a_mask(seed, dtype, L, S, offset):
    """Decoding's path (little work, no mask, no graph): exp(s - max) V divided by the row sums
    afterwards. PyTorch's values (in float64 from the same inputs), also with every score near
    ``offset`` = 200, where exp would overflow unshifted (a common component c u in q and k
    adds c^2 / sqrt(8) to each score). Scores that large carry a rounding error of a few ulps of
    200, which moves the output by as much times |v|: the tolerance allows for it."""
    c = dtype((offset * 8**0.5) ** 0.5)
    u = np.full(8, 8**-0.5, dtype=dtype)
    q = randn(seed, (2, 3, L, 8), dtype) + c * u
    k, v = randn(seed + 1, (2, 3, S, 8), dtype) + c * u, randn(seed + 2, (2, 3, S, 5), dtype)
    out = F.scaled_dot_product_attention(nf.Tensor(q), nf.Tensor(k), nf.Tensor(v)).numpy()
    expected = TF.scaled_dot_product_attention(*(torch.from_numpy(a.astype(np.float64)) for a in (q, k, v)))
    assert out.dtype == dtype
    tol = LOOSE[dtype]
    score_rounding = 8 * np.finfo(dtype).eps * offset * np.abs(v).max()
    np.testing.assert_allclose(out, expected.numpy(), rtol=tol["rtol"], atol=tol["atol"] + score_rounding)


def test_attention_inference_path_with_a_mask_batch_larger_than_the_inputs():
    q, k, v = randn(0, (3, 4)), randn(1, (5, 4)), randn(2, (5, 2))
    mask = np.random.default_rng(3).random((2, 3, 5)) > 0.4
    mask[..., 0] = True
    with nf.no_grad():
        fast = F.scaled_dot_product_attention(nf.Tensor(q), nf.Tensor(k), nf.Tensor(v), attn_mask=mask)
    tracked = F.scaled_dot_product_attention(
        nf.Tensor(q, requires_grad=True), nf.Tensor(k), nf.Tensor(v), attn_mask=mask
    )
    assert fast.shape == tracked.shape == (2, 3, 2)
    np.testing.assert_allclose(fast.numpy(), tracked.numpy(), rtol=1e-12, atol=1e-14)


def test_attention_weights_and_fully_masked_rows():
    q = nf.Tensor(randn(0, (2, 3, 4)), requires_grad=True)
    k = nf.Tensor(randn(1, (2, 5, 4)), requires_grad=True)
    v = nf.Tensor(randn(2, (2, 5, 4)), requires_grad=True)
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False  # query 1 may attend to nothing
    out, w = F.scaled_dot_product_attention_with_weights(q, k, v, attn_mask=mask)
    assert w.shape == (2, 3, 5) and w.requires_grad  # in the graph (tests/nn/test_attention_weights.py)
    np.testing.assert_allclose(w.numpy()[:, [0, 2]].sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(w.numpy()[:, 1], 0.0)
    np.testing.assert_array_equal(out.numpy()[:, 1], 0.0)
    out.sum().backward()
    assert np.isfinite(q.grad).all() and np.isfinite(k.grad).all() and np.isfinite(v.grad).all()
    np.testing.assert_array_equal(q.grad[:, 1], 0.0)


def test_attention_dropout_gradcheck_and_statistics():
    q, k, v = (nf.Tensor(randn(i, (2, 3, 4)), requires_grad=True) for i in range(3))

    def fn(a, b, c):
        nf.manual_seed(5)
        return F.scaled_dot_product_attention(a, b, c, dropout_p=0.3)

    assert gradcheck(fn, [q, k, v])
    nf.manual_seed(0)
    big = nf.zeros(1, 64, 64, 8)
    _, w = F.scaled_dot_product_attention_with_weights(big, big, big, dropout_p=0.25)
    assert abs(float((w.numpy() == 0).mean()) - 0.25) < 0.02


def test_attention_float32_stays_float32():
    q = nf.randn(2, 4, 8, requires_grad=True)
    out = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    out.sum().backward()
    assert out.dtype == np.float32 and q.grad.dtype == np.float32


# --- bad input -------------------------------------------------------------------------------


def test_bad_input_errors_name_the_argument():
    x = nf.randn(2, 3)
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be one of .*'avg'"):
        F.cross_entropy(x, np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match=r"mse_loss: reduction"):
        F.mse_loss(x, x, reduction="max")
    with pytest.raises(ValueError, match=r"target must have shape \(2,\).*got \(3,\)"):
        F.cross_entropy(x, np.array([0, 1, 2]))
    with pytest.raises(IndexError, match=r"target values must be in \[0, 3\)"):
        F.cross_entropy(x, np.array([0, 5]))
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(2, 3\) and target shape \(3,\)"):
        F.mse_loss(x, nf.randn(3))
    q = nf.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 3\) does not broadcast"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((3, 3), dtype=bool))
    with pytest.raises(TypeError, match=r"attn_mask must be bool or floating, got dtype int64"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"query and key must share the last dim"):
        F.scaled_dot_product_attention(q, nf.randn(2, 4, 7), q)
    with pytest.raises(ValueError, match=r"layer_norm: input shape \(2, 4, 8\) must end with"):
        F.layer_norm(q, (4,))
    with pytest.raises(IndexError, match=r"embedding: indices must be in \[0, 3\)"):
        F.embedding(np.array([0, 3]), nf.randn(3, 2))
    with pytest.raises(TypeError, match=r"embedding: input must hold integer indices"):
        F.embedding(np.array([0.0]), nf.randn(3, 2))
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\], got 1.5"):
        F.dropout(x, 1.5)

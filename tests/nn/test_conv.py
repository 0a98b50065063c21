"""Convolution, pooling and padding against PyTorch over hypothesis-drawn shapes, strides,
paddings, dilations and groups, float32 and float64: values and the gradients of input,
weight and bias; a float64 gradcheck of each primitive; the modules with weights through the
state dict; the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import numformer as nf
from helpers import LOOSE, check_parity, randn
from numformer import nn
from numformer.nn import functional as F
from numformer.testing import gradcheck

SEEDS = st.integers(0, 2**31 - 1)
DTYPES = st.sampled_from([np.float32, np.float64])
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def _conv_case(data, n: int):
    """A random convolution: (input shape, weight shape, bias?, stride, padding, dilation, groups)."""
    groups = data.draw(st.sampled_from([1, 1, 2, 3]))
    C, O = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(n))
    if data.draw(st.booleans()):
        padding = "same" if data.draw(st.booleans()) else "valid"
        if padding == "same":
            stride = (1,) * n
    else:
        padding = tuple(data.draw(st.integers(0, 2)) for _ in range(n))
    sizes = tuple(data.draw(st.integers(1, 7)) for _ in range(n))
    pads = padding if isinstance(padding, tuple) else (0,) * n
    assume(all(s + 2 * p >= d * (k - 1) + 1 for s, p, d, k in zip(sizes, pads, dilation, kernel)))
    batch = data.draw(st.sampled_from([(), (1,), (2,)]))
    bias = data.draw(st.booleans())
    return batch + (C,) + sizes, (O, C // groups) + kernel, bias, stride, padding, dilation, groups


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # PyTorch's note on its own copy
@pytest.mark.parametrize("n", [1, 2])
@settings(max_examples=20)
@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_conv_parity_and_gradcheck(n, seed, dtype, data):
    """F.conv1d / F.conv2d against torch.nn.functional over random strides, paddings (ints,
    "same", "valid"), dilations, groups and unbatched inputs; stride = kernel takes the
    patch-embedding path."""
    x_shape, w_shape, bias, stride, padding, dilation, groups = _conv_case(data, n)
    arrays = [randn(seed, x_shape), randn(seed + 1, w_shape)] + ([randn(seed + 2, w_shape[:1])] if bias else [])
    name = f"conv{n}d"

    def ours(*a):
        return getattr(F, name)(*a, stride=stride, padding=padding, dilation=dilation, groups=groups)

    def theirs(*a):
        return getattr(TF, name)(*a, stride=stride, padding=padding, dilation=dilation, groups=groups)

    check_parity(ours, theirs, arrays, dtype, loose=True)
    check_parity(ours, theirs, arrays, dtype, grad=False, loose=True)
    if dtype == np.float64:
        assert gradcheck(ours, [nf.Tensor(a, requires_grad=True) for a in arrays])


@pytest.mark.parametrize("n", [1, 2])
@settings(max_examples=15)
@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_pooling_parity_and_gradcheck(n, seed, dtype, data):
    """max and average pooling: kernels, strides (None: the kernel), padding up to half the
    kernel, dilation (max), ceil_mode, count_include_pad and divisor_override (average), the
    indices max pooling returns."""
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(n))
    stride = data.draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * n)))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(n))
    padding = tuple(data.draw(st.integers(0, k // 2)) for k in kernel)
    ceil_mode = data.draw(st.booleans())
    sizes = tuple(data.draw(st.integers(3, 6)) for _ in range(n))
    assume(all(s + 2 * p >= d * (k - 1) + 1 for s, p, d, k in zip(sizes, padding, dilation, kernel)))
    x = randn(seed, (2, 2) + sizes) if data.draw(st.booleans()) else randn(seed, (2,) + sizes)
    pool = f"max_pool{n}d"
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "ceil_mode": ceil_mode}
    check_parity(lambda t: getattr(F, pool)(t, kernel, **kw), lambda t: getattr(TF, pool)(t, kernel, **kw), [x], dtype)
    out, idx = getattr(F, pool)(nf.Tensor(x), kernel, **kw, return_indices=True)
    _, t_idx = getattr(TF, pool)(torch.tensor(x), kernel, **kw, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), t_idx.numpy())
    assert idx.dtype == np.int64
    avg = {"stride": stride, "padding": padding, "ceil_mode": ceil_mode}
    avg["count_include_pad"] = data.draw(st.booleans())
    if n == 2 and data.draw(st.booleans()):
        avg["divisor_override"] = data.draw(st.integers(1, 5))
    pool = f"avg_pool{n}d"
    check_parity(
        lambda t: getattr(F, pool)(t, kernel, **avg), lambda t: getattr(TF, pool)(t, kernel, **avg), [x], dtype
    )
    if dtype == np.float64:  # on one channel: finite differences cost two forwards per element
        one = x[:1]
        y = one + np.arange(one.size).reshape(one.shape) * 1e-2  # distinct values: each window's maximum is unique
        assert gradcheck(lambda t: getattr(F, f"max_pool{n}d")(t, kernel, **kw), [nf.Tensor(y, requires_grad=True)])
        assert gradcheck(lambda t: getattr(F, pool)(t, kernel, **avg), [nf.Tensor(one, requires_grad=True)])


@settings(max_examples=15)
@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_adaptive_average_pooling(seed, dtype, data):
    """Output sizes that divide the input, that do not (overlapping windows), that exceed it,
    and None (keep)."""
    H, W = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
    size = data.draw(st.sampled_from([1, (2, 3), (H, None), (5, 1), (None, 4)]))
    x = randn(seed, (2, 3, H, W))
    check_parity(lambda t: F.adaptive_avg_pool2d(t, size), lambda t: TF.adaptive_avg_pool2d(t, size), [x], dtype)
    length = data.draw(st.integers(1, 5))
    x1 = randn(seed, (3, W))
    check_parity(lambda t: F.adaptive_avg_pool1d(t, length), lambda t: TF.adaptive_avg_pool1d(t, length), [x1], dtype)
    if dtype == np.float64:
        assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, size), [nf.Tensor(x, requires_grad=True)])


@settings(max_examples=20)
@given(seed=SEEDS, dtype=DTYPES, data=st.data())
def test_pad_parity_and_gradcheck(seed, dtype, data):
    """F.pad in its four modes over the last 1, 2 or 3 dims (constant: any number of dims, with
    negative amounts cropping), batched and unbatched."""
    mode = data.draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    k = data.draw(st.integers(1, 3))
    extra = data.draw(st.integers(0, 2 if mode == "constant" else 1))
    shape = tuple(data.draw(st.integers(1, 4)) for _ in range(k + extra))
    if mode == "constant":
        pads = tuple(data.draw(st.integers(-1, 2)) for _ in range(2 * k))
        assume(all(shape[-1 - i // 2] + pads[i - i % 2] + pads[i - i % 2 + 1] >= 0 for i in range(2 * k)))
    else:
        assume(len(shape) >= k + 1)
        limit = [shape[-1 - i] - (1 if mode == "reflect" else 0) for i in range(k)]
        pads = tuple(data.draw(st.integers(0, min(2, limit[i // 2]))) for i in range(2 * k))
    value = data.draw(st.sampled_from([None, 1.5])) if mode == "constant" else None
    x = randn(seed, shape)
    check_parity(lambda t: F.pad(t, pads, mode, value), lambda t: TF.pad(t, pads, mode, value), [x], dtype)
    if dtype == np.float64:
        assert gradcheck(lambda t: F.pad(t, pads, mode, value), [nf.Tensor(x, requires_grad=True)])


def test_pad_of_integers_and_padding_errors():
    ids = nf.tensor([[1, 2], [3, 4]])
    np.testing.assert_array_equal(F.pad(ids, (1, 0), value=9).numpy(), [[9, 1, 2], [9, 3, 4]])
    x = nf.randn(1, 2, 3)
    with pytest.raises(ValueError, match=r"pad: pad must be an even number of ints, got \(1, 2, 3\)"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match="pad: mode must be one of .* got 'mirror'"):
        F.pad(x, (1, 1), mode="mirror")
    with pytest.raises(ValueError, match=r"pad: mode 'reflect' pads dim 2 of size 3 by at most 2, got \(3, 0\)"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(NotImplementedError, match="pad: mode 'replicate' pads the last 1, 2 or 3 dims"):
        F.pad(nf.randn(3), (1, 1), mode="replicate")
    with pytest.raises(ValueError, match='padding mode "reflect" doesn\'t take in value argument'):
        F.pad(x, (1, 1), mode="reflect", value=2.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv_modules_match_torch(padding_mode, dtype):
    """nn.Conv1d and nn.Conv2d with PyTorch's initialisation, state-dict keys and padding
    modes: weights copied through the state dict, outputs and every gradient."""
    from test_layers import compare_modules

    nf.manual_seed(0)
    for make, x in (
        (
            lambda m: m.Conv2d(
                4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2, padding_mode=padding_mode
            ),
            randn(0, (2, 4, 7, 6)),
        ),  # noqa: E501
        (lambda m: m.Conv2d(3, 5, 3, padding="same", padding_mode=padding_mode, bias=False), randn(1, (2, 3, 5, 5))),
        (lambda m: m.Conv1d(3, 4, 3, padding=2, padding_mode=padding_mode), randn(2, (2, 3, 6))),
        (
            lambda m: m.Conv1d(2, 4, 4, padding="same", dilation=2, groups=2, padding_mode=padding_mode),
            randn(3, (2, 8)),
        ),
    ):
        ours, theirs = make(nn), make(torch.nn)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        compare_modules(ours, theirs, [x], dtype)
        assert repr(ours).split("  #")[0] == repr(theirs)  # numformer adds the parameter count


def test_conv_initialisation_is_pytorchs():
    """Weights U(-b, b) with b = 1 / sqrt(fan_in) (kaiming-uniform with a = sqrt 5), bias the same."""
    m = nn.Conv2d(8, 16, 3, groups=2)
    bound = 1 / np.sqrt(4 * 9)
    for p in (m.weight, m.bias):
        assert abs(p.numpy()).max() <= bound and abs(p.numpy()).max() > 0.8 * bound


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_small_cnn_trains_as_pytorchs(dtype):
    """The seed's kind of CNN, built from the modules, weights copied: the loss and every
    parameter's gradient equal PyTorch's."""
    from test_layers import compare_modules

    def build(m):
        return m.Sequential(
            m.Conv2d(1, 4, 3, padding=1),
            m.BatchNorm2d(4),
            m.ReLU(),
            m.MaxPool2d(2),
            m.Conv2d(4, 8, 3),
            m.LeakyReLU(0.1),
            m.AvgPool2d(2, ceil_mode=True),
            m.AdaptiveAvgPool2d(1),
            m.Flatten(),
            m.Linear(8, 3),
            m.LogSoftmax(dim=1),
        )

    nf.manual_seed(0)
    compare_modules(build(nn), build(torch.nn), [randn(0, (4, 1, 9, 9))], dtype)


def test_pooling_modules_match_torch():
    x = randn(0, (2, 3, 7, 6))
    for name, args, kw in (
        ("MaxPool2d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True}),
        ("MaxPool2d", (2,), {"dilation": 2}),
        ("AvgPool2d", (3,), {"stride": 2, "padding": 1, "count_include_pad": False}),
        ("AdaptiveAvgPool2d", ((3, 2),), {}),
    ):
        check_parity(getattr(nn, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw), [x], np.float64)
    x1 = randn(1, (2, 3, 9))
    for name, args, kw in (
        ("MaxPool1d", (2,), {}),
        ("AvgPool1d", (3,), {"stride": 2, "padding": 1}),
        ("AdaptiveAvgPool1d", (4,), {}),
    ):
        check_parity(getattr(nn, name)(*args, **kw), getattr(torch.nn, name)(*args, **kw), [x1], np.float64)
    out, idx = nn.MaxPool2d(2, return_indices=True)(nf.Tensor(x))
    np.testing.assert_array_equal(idx.numpy(), torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(x))[1].numpy())


def test_max_pool_ties_and_nan_follow_pytorch():
    """The first maximum of a window wins (the gradient goes there); NaN beats any number."""
    x = np.array([[[[1.0, 1.0], [0.0, 1.0]], [[np.nan, 2.0], [3.0, 1.0]]]])
    check_parity(lambda t: F.max_pool2d(t, 2), lambda t: TF.max_pool2d(t, 2), [x[:, :1]], np.float64)
    ours = F.max_pool2d(nf.Tensor(x), 2).numpy()
    assert np.isnan(ours[0, 1, 0, 0]) and ours[0, 0, 0, 0] == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_no_grad_and_frozen_weights(dtype):
    """The inference path gives the recorded path's values; with the input alone requiring grad
    (frozen weights: no columns kept) its gradient is still PyTorch's."""
    x, w = randn(0, (2, 3, 6, 5)), randn(1, (4, 3, 3, 3))
    with nf.no_grad():
        plain = F.conv2d(nf.Tensor(x.astype(dtype)), nf.Tensor(w.astype(dtype)), padding=1)
    recorded = F.conv2d(nf.Tensor(x.astype(dtype), requires_grad=True), nf.Tensor(w.astype(dtype)), padding=1)
    np.testing.assert_array_equal(plain.numpy(), recorded.numpy())
    a = nf.Tensor(x.astype(dtype), requires_grad=True)
    b = torch.tensor(x.astype(dtype), requires_grad=True)
    F.conv2d(a, nf.Tensor(w.astype(dtype)), padding=1).sum().backward()
    TF.conv2d(b, torch.tensor(w.astype(dtype)), padding=1).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **LOOSE[dtype])


def test_bad_conv_and_pool_arguments_get_one_clear_error():
    x, w = nf.randn(2, 4, 5, 5), nf.randn(6, 2, 3, 3)
    with pytest.raises(
        ValueError, match=r"conv2d: input has 4 channels but weight of shape \(6, 2, 3, 3\) with groups=1"
    ):
        F.conv2d(x, w)
    with pytest.raises(ValueError, match="conv2d: in_channels 4 and out_channels 6 must both be divisible by groups=4"):
        F.conv2d(x, nf.randn(6, 1, 3, 3), groups=4)
    with pytest.raises(ValueError, match=r"conv2d: padding='same' is not supported for strided convolutions"):
        F.conv2d(x, w, stride=2, padding="same", groups=2)
    with pytest.raises(ValueError, match=r"conv2d: stride must be an int >= 1 or 2 of them, got 0"):
        F.conv2d(x, w, stride=0, groups=2)
    with pytest.raises(ValueError, match=r"conv2d: input must be \(N, C, H, W\) or \(C, H, W\), got shape \(5, 5\)"):
        F.conv2d(nf.randn(5, 5), w)
    with pytest.raises(ValueError, match=r"conv2d: the kernel \(3, 3\) .* does not fit the padded input \(2, 2\)"):
        F.conv2d(nf.randn(1, 4, 2, 2), w, groups=2)
    with pytest.raises(TypeError, match="conv2d: input dtype float64 and weight dtype float32 differ"):
        F.conv2d(nf.Tensor(np.zeros((1, 4, 5, 5))), w, groups=2)
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(6,\), got \(5,\)"):
        F.conv2d(x, w, nf.randn(5), groups=2)
    with pytest.raises(ValueError, match="Conv2d: padding_mode must be one of .* got 'mirror'"):
        nn.Conv2d(4, 6, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="Conv1d: in_channels 3 and out_channels 4 must be divisible by groups=2"):
        nn.Conv1d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"conv2d: input has 3 channels but weight of shape \(6, 4, 3, 3\)"):
        nn.Conv2d(4, 6, 3)(nf.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="max_pool2d: padding must be at most half of the effective kernel size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"avg_pool2d: input of spatial size \(5, 5\) is too small"):
        F.avg_pool2d(x, 6)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be positive ints"):
        F.adaptive_avg_pool2d(x, 0)
    with pytest.raises(ValueError, match="avg_pool2d: divisor_override must not be 0"):
        F.avg_pool2d(x, 2, divisor_override=0)


def test_float32_stays_float32():
    x = nf.randn(2, 3, 8, 8, requires_grad=True)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    y = F.max_pool2d(conv(x), 2)
    y = F.pad(F.avg_pool2d(y, 2), (1, 1, 1, 1), mode="reflect")
    y.sum().backward()
    assert y.dtype == x.grad.dtype == conv.weight.grad.dtype == np.float32


def test_version_counters_guard_what_backward_reads():
    """Backward reads the weight, and the input only where the columns are a view of it (a 1x1
    convolution): an in-place change of the input after a 3x3 convolution is harmless, after a
    1x1 one it is PyTorch's error, never a wrong gradient."""
    for kernel, harmful in ((3, False), (1, True)):
        x = nf.randn(1, 2, 4, 4, requires_grad=True)
        h = x * 1
        w = nf.randn(3, 2, kernel, kernel, requires_grad=True)
        y = F.conv2d(h, w).sum()
        h.add_(1.0)
        if harmful:
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                y.backward()
        else:
            y.backward()
            assert w.grad is not None


def test_the_new_kernels_run_on_a_device_through_the_backend_only():
    """Every new primitive (convolution, pooling, padding, GRU both ways, the losses and
    activations, normalize, one_hot) on the stand-in "cuda" device, whose arrays refuse NumPy:
    no path calls NumPy directly, and loss and gradients equal the host's."""
    from numformer import backend
    from numformer.testing import stand_in_arrays

    def run(device):
        nf.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"),
            nn.BatchNorm2d(4),
            nn.LeakyReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(4, 4, 2, stride=2, groups=2),
            nn.AvgPool2d(2, 1, 1, count_include_pad=False),
            nn.AdaptiveAvgPool2d((2, 1)),
            nn.Flatten(),
            nn.Linear(8, 6),
            nn.Mish(),
        ).to(device)
        gru = nn.GRU(6, 5, bidirectional=True, batch_first=True).to(device)
        x = nf.Tensor(randn(0, (3, 2, 7, 7), dtype=np.float32)).to(device).requires_grad_()
        out, _ = gru(model(x).reshape(3, 1, 6))
        t = nf.Tensor(np.random.default_rng(1).random((3, 1, 10)).astype(np.float32)).to(device)
        losses = [
            F.binary_cross_entropy_with_logits(out, t, pos_weight=nf.ones(10).to(device)),
            F.kl_div(F.log_softmax(out, -1), F.softmax(t, -1), reduction="batchmean"),
            F.smooth_l1_loss(out, t) + F.huber_loss(out, t) + F.l1_loss(out, t) + F.mse_loss(out, t, weight=t),
            F.binary_cross_entropy(F.sigmoid(out), t),
            F.nll_loss(F.log_softmax(out.reshape(3, 10), 1), nf.tensor([1, 2, 3]).to(device)),
            F.cosine_similarity(out, t, -1).sum() + F.normalize(out, dim=-1).sum(),
            F.pad(out, (1, 1, 1, 0), mode="replicate").sum() + F.pad(out, (2, 1), mode="circular").sum(),
            (F.elu(out) + F.softplus(out) + F.hardswish(out) + F.hardsigmoid(out) + F.logsigmoid(out)).sum(),
            (F.softsign(out) + F.relu6(out)).sum() + F.glu(out).sum(),
            F.conv1d(out, nf.ones(4, 1, 3).to(device), padding="same").sum(),
            F.max_pool1d(out, 2).sum() + F.avg_pool1d(out, 3).sum(),
        ]
        loss = sum(losses[1:], losses[0])
        loss.backward()
        one_hot = F.one_hot(nf.tensor([1, 2]).to(device), 4).cpu().numpy()
        return loss.detach().cpu().numpy(), x.grad.cpu().numpy(), gru.weight_hh_l0_reverse.grad.cpu().numpy(), one_hot

    saved = dict(backend._DEVICE_MODULES)
    backend.register_device("cuda", stand_in_arrays())
    try:
        host, device = run("cpu"), run("cuda")
    finally:
        backend._DEVICE_MODULES.clear()
        backend._DEVICE_MODULES.update(saved)
        backend.set_array_module(np)
    for a, b in zip(host[:3], device[:3]):
        np.testing.assert_allclose(a, b, **LOOSE[np.float32])
    np.testing.assert_array_equal(host[3], device[3])

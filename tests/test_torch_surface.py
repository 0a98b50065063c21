"""The rest of PyTorch's surface that ported programs reach: more maths (einsum, erf, prod, lerp,
outer, diag, ...), module-level functions, gradient hooks and grad modes, in-place variants,
and the device/compilation namespaces (``cuda``, ``amp``, ``backends``, ``compile``) answered as
PyTorch's CPU build answers them."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numformer as nf
from helpers import check_parity, randn
from numformer.testing import gradcheck

SEEDS = st.integers(0, 2**16)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
DTYPES = st.sampled_from([np.float32, np.float64])

# --- maths --------------------------------------------------------------------------------------

UNARY = {  # name -> (numformer, torch, drawing options); each differentiable
    "erf": (nf.erf, torch.erf, {}),
    "erfc": (nf.erfc, torch.erfc, {}),
    "prod all": (lambda x: nf.prod(x), lambda x: torch.prod(x), {}),
    "prod dim keepdim": (lambda x: x.prod(-1, keepdim=True), lambda x: x.prod(-1, keepdim=True), {}),
    "lerp": (lambda x: nf.lerp(x, x.flip(0), 0.3), lambda x: torch.lerp(x, x.flip(0), 0.3), {}),
    "diff": (lambda x: nf.diff(x, n=1, dim=0), lambda x: torch.diff(x, n=1, dim=0), {}),
    "tile": (lambda x: nf.tile(x, (2, 1)), lambda x: torch.tile(x, (2, 1)), {}),
    "broadcast_to": (lambda x: nf.broadcast_to(x, (2,) + x.shape), lambda x: torch.broadcast_to(x, (2,) + x.shape), {}),
    "nan_to_num": (lambda x: (x / (x > 0)).nan_to_num(), lambda x: (x / (x > 0)).nan_to_num(), {}),
    "fmod": (lambda x: nf.fmod(x, 0.7), lambda x: torch.fmod(x, 0.7), {}),
    "addcmul": (lambda x: x.addcmul(x, x.flip(0), value=0.5), lambda x: x.addcmul(x, x.flip(0), value=0.5), {}),
    "addcdiv": (
        lambda x: nf.addcdiv(x, x, x.abs() + 1, value=2),
        lambda x: torch.addcdiv(x, x, x.abs() + 1, value=2),
        {},
    ),
    "unfold": (lambda x: x.unfold(0, 1, 1), lambda x: x.unfold(0, 1, 1), {}),
    "unflatten": (lambda x: x.unflatten(0, (1, -1)), lambda x: x.unflatten(0, (1, -1)), {}),
    "exp_ in a graph": (lambda x: (x * 1).exp_() * 2, lambda x: (x * 1).exp_() * 2, {}),
    "sigmoid_ in a graph": (lambda x: (x + 0).sigmoid_(), lambda x: (x + 0).sigmoid_(), {}),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(seed=SEEDS, shape=SHAPES, dtype=DTYPES)
@settings(max_examples=12, deadline=None)
def test_more_functions_match_pytorch(name, seed, shape, dtype):
    ours, theirs, draw = UNARY[name]
    x = randn(seed, shape, **draw)
    if name.startswith("prod"):
        x.reshape(-1)[seed % x.size] = 0.0  # a zero: the gradient is still exact
    check_parity(ours, theirs, [x], dtype, loose=True)


MATRIX = {  # on (n, m)
    "diag of a matrix": (lambda x: nf.diag(x, 1), lambda x: torch.diag(x, 1)),
    "diag of its row": (lambda x: nf.diag(x[0], -1), lambda x: torch.diag(x[0], -1)),
    "trace": (nf.trace, torch.trace),
    "outer": (lambda x: nf.outer(x[0], x[:, 0]), lambda x: torch.outer(x[0], x[:, 0])),
    "dot": (lambda x: x[0].dot(x[0] * 2), lambda x: x[0].dot(x[0] * 2)),
    "inner": (lambda x: nf.inner(x, x), lambda x: torch.inner(x, x)),
    "mv": (lambda x: x.mv(x[0]), lambda x: x.mv(x[0])),
    "addmm": (
        lambda x: nf.addmm(x[:, :1], x, x.t(), beta=0.5, alpha=2),
        lambda x: torch.addmm(x[:, :1], x, x.t(), beta=0.5, alpha=2),
    ),
    "baddbmm": (
        lambda x: nf.baddbmm(x, x[None], x.t()[None] @ x[None]),
        lambda x: torch.baddbmm(x, x[None], x.t()[None] @ x[None]),
    ),
    "take_along_dim": (
        lambda x: nf.take_along_dim(x, nf.argsort(x, 1), 1),
        lambda x: torch.take_along_dim(x, torch.argsort(x, 1), 1),
    ),
    "index_add": (
        lambda x: x.index_add(0, nf.tensor([0] * x.shape[0]), x * 2, alpha=0.5),
        lambda x: x.index_add(0, torch.tensor([0] * x.shape[0]), x * 2, alpha=0.5),
    ),
}


@pytest.mark.parametrize("name", sorted(MATRIX))
@given(seed=SEEDS, shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=5), dtype=DTYPES)
@settings(max_examples=12, deadline=None)
def test_matrix_functions_match_pytorch(name, seed, shape, dtype):
    ours, theirs = MATRIX[name]
    check_parity(ours, theirs, [randn(seed, shape)], dtype, loose=True)


EQUATIONS = [  # (equation, operand shapes from sizes a..e)
    ("ij,jk->ik", "ab,bc"),
    ("bhqd,bhkd->bhqk", "abcd,abed"),
    ("i,j->ij", "a,b"),
    ("...ij,...jk", "abc,acd"),
    ("bij->bj", "abc"),
    ("ij,j", "ab,b"),
    ("ijk,k->i", "abc,c"),
    ("i,i,i->", "a,a,a"),
    ("ab,cd->abcd", "ab,cd"),
    ("...d,d->...", "abc,c"),
]


@pytest.mark.parametrize("equation,letters", EQUATIONS)
@given(seed=SEEDS, sizes=st.lists(st.integers(1, 4), min_size=5, max_size=5), dtype=DTYPES)
@settings(max_examples=10, deadline=None)
def test_einsum_matches_pytorch(equation, letters, seed, sizes, dtype):
    size = dict(zip("abcde", sizes))
    shapes = [tuple(size[c] for c in term) for term in letters.split(",")]
    arrays = [randn(seed + i, shape) for i, shape in enumerate(shapes)]
    check_parity(
        lambda *xs: nf.einsum(equation, *xs), lambda *xs: torch.einsum(equation, *xs), arrays, dtype, loose=True
    )


def test_einsum_broadcasts_a_size_one_dim_and_sums_its_gradient_back():
    a, b = randn(0, (1, 3, 4)), randn(1, (5, 4, 2))
    check_parity(lambda x, y: nf.einsum("bij,bjk->bik", x, y), lambda x, y: torch.einsum("bij,bjk->bik", x, y),
                 [a, b], np.float64)  # fmt: skip


def test_einsum_refuses_what_it_cannot_do_with_the_operand_named():
    x = nf.randn(3, 3, requires_grad=True)
    with pytest.raises(ValueError, match="operand 1 has 1 dims"):
        nf.einsum("ij,jk->ik", x, nf.randn(3))
    with pytest.raises(NotImplementedError, match="operand 0.*'ii'"):
        nf.einsum("ii->i", x)
    assert np.allclose(nf.einsum("ii->i", x.detach()).numpy(), np.diagonal(x.detach().numpy()))
    with pytest.raises(ValueError, match="output subscripts"):
        nf.einsum("ij->k", x)


@pytest.mark.parametrize(
    "name,fn",
    [
        ("Einsum", lambda x: nf.einsum("ij,kj->ik", x, x * x)),
        ("Einsum with a letter of one operand", lambda x: nf.einsum("ij,k->ik", x, x[0])),
        ("Erf", lambda x: nf.erf(x)),
        ("Prod", lambda x: x.prod(0)),
        ("Prod with a zero", lambda x: (x * nf.tensor([[0.0] * 4, [1.0] * 4, [1.0] * 4], dtype=np.float64)).prod(0)),
    ],
)
def test_new_primitives_pass_gradcheck(name, fn):
    x = nf.tensor(randn(5, (3, 4)) + 0.1, dtype=np.float64, requires_grad=True)
    assert gradcheck(fn, [x])


def test_non_differentiable_functions_match_pytorch():
    x = np.array([3, 1, 2, 3, 3, 0])
    ours, theirs = (
        nf.unique(nf.tensor(x), return_inverse=True, return_counts=True),
        torch.unique(torch.tensor(x), return_inverse=True, return_counts=True),
    )
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(nf.bincount(nf.tensor(x)).numpy(), torch.bincount(torch.tensor(x)).numpy())
    bounds, values = [1.0, 3.0, 5.0], [0.5, 1.0, 3.0, 6.0]
    for right in (False, True):
        np.testing.assert_array_equal(
            nf.bucketize(nf.tensor(values), nf.tensor(bounds), right=right).numpy(),
            torch.bucketize(torch.tensor(values), torch.tensor(bounds), right=right).numpy(),
        )
        np.testing.assert_array_equal(
            nf.searchsorted(nf.tensor(bounds), nf.tensor(values), right=right).numpy(),
            torch.searchsorted(torch.tensor(bounds), torch.tensor(values), right=right).numpy(),
        )
    for offset in (-1, 0, 2):
        np.testing.assert_array_equal(nf.tril_indices(4, 3, offset).numpy(), torch.tril_indices(4, 3, offset).numpy())
        np.testing.assert_array_equal(nf.triu_indices(3, 4, offset).numpy(), torch.triu_indices(3, 4, offset).numpy())
    np.testing.assert_allclose(nf.logspace(0, 2, 5).numpy(), torch.logspace(0, 2, 5).numpy(), rtol=1e-6)
    assert nf.finfo(nf.float32).min == torch.finfo(torch.float32).min
    assert nf.finfo(nf.float16).eps == torch.finfo(torch.float16).eps
    assert nf.iinfo(nf.int64).max == torch.iinfo(torch.int64).max
    assert nf.Size([2, 3]) == nf.zeros(2, 3).shape and nf.Size([2, 3]).numel() == 6
    assert nf.broadcast_shapes((2, 1), (3,)) == tuple(torch.broadcast_shapes((2, 1), (3,)))
    a, b = nf.broadcast_tensors(nf.zeros(2, 1), nf.zeros(3))
    assert a.shape == b.shape == (2, 3)
    assert nf.hstack([nf.zeros(2), nf.ones(3)]).shape == (5,) and nf.vstack([nf.zeros(2), nf.ones(2)]).shape == (2, 2)
    t = nf.zeros(4, 4)
    tt = torch.zeros(4, 4)
    np.testing.assert_array_equal(t.fill_diagonal_(2.0).numpy(), tt.fill_diagonal_(2.0).numpy())
    assert 2.0 in t and 5.0 not in t
    assert [r.shape for r in nf.zeros(3, 2)] == [(2,)] * 3
    assert nf.arange(12.0).reshape(3, 4).t().stride() == torch.arange(12.0).reshape(3, 4).t().stride()


def test_printing_as_pytorch():
    x = np.array([[1.5, -2.0], [0.25, 3.0]], dtype=np.float32)
    assert repr(nf.tensor(x)) == repr(torch.tensor(x))
    assert repr(nf.arange(3.0)) == repr(torch.arange(3.0))
    nf.set_printoptions(precision=2)
    torch.set_printoptions(precision=2)
    try:
        assert repr(nf.tensor(x)) == repr(torch.tensor(x))
    finally:
        nf.set_printoptions(profile="default")
        torch.set_printoptions(profile="default")


def test_module_level_functions_take_pytorchs_argument_names():
    from numformer.functions import MODULE
    from test_tensor_api import _torch_parameters

    # arguments PyTorch's factory overloads take that their docstrings do not list
    undocumented = {"normal": {"dtype", "device", "requires_grad"}}
    torch.normal(0.0, 1.0, (2,), dtype=torch.float64, device="cpu", requires_grad=False)  # it does take them
    checked = 0
    for name, fn in MODULE.items():
        if not inspect.isfunction(fn) or not hasattr(torch, name):
            continue
        overloads = _torch_parameters(getattr(torch, name).__doc__ or "", name)
        if not overloads:
            continue
        names = {p for overload in overloads for p, _, _ in overload} | undocumented.get(name, set())
        for p in inspect.signature(fn).parameters.values():
            if p.kind != p.VAR_POSITIONAL:
                assert p.name in names, f"{name}: argument {p.name!r} is not one of PyTorch's {sorted(names)}"
        checked += 1
    assert checked >= 6, checked


# --- hooks and grad modes -----------------------------------------------------------------------


def _hooked(lib):
    x = lib.tensor([1.0, -2.0, 3.0], requires_grad=True)
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.sum().item()) or g * 2)
    y = x * 3
    y.register_hook(lambda g: g + 1)
    (y * y).sum().backward()
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()  # the removed hook no longer doubles
    return seen, x.grad.tolist()


def test_gradient_hooks_as_pytorchs():
    assert _hooked(nf) == _hooked(torch)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        nf.zeros(2).register_hook(lambda g: g)


def _post_accumulated(lib):
    """What post-accumulate hooks see on a three-layer chain: the grad already in ``.grad``,
    and whether the first layer's gradient exists yet (backward still running)."""
    lib.manual_seed(0)
    layers = [lib.nn.Linear(3, 3) for _ in range(3)]
    seen = []

    def hook(name):
        return lambda p: seen.append((name, p.grad is not None, layers[0].weight.grad is not None))

    handles = [layer.weight.register_post_accumulate_grad_hook(hook(i)) for i, layer in enumerate(layers)]
    x = lib.ones(2, 3)
    for _ in range(2):  # the second backward accumulates: the hooks run again, after the sum
        y = x
        for layer in layers:
            y = layer(y).tanh()
        y.sum().backward()
    handles[2].remove()
    layers[2](layers[1](x)).sum().backward()
    return seen


def test_post_accumulate_grad_hooks_run_as_each_gradient_completes_as_pytorchs():
    seen = _post_accumulated(nf)
    assert seen == _post_accumulated(torch)
    assert seen[0] == (2, True, False)  # the last layer's gradient is ready before the first's exists
    for lib in (nf, torch):
        with pytest.raises(RuntimeError, match="cannot be registered on non-leaf tensors"):
            lib.ones(2, requires_grad=True).exp().register_post_accumulate_grad_hook(lambda p: None)
        with pytest.raises(RuntimeError, match="doesn't require gradient"):
            lib.ones(2).register_post_accumulate_grad_hook(lambda p: None)
        w = lib.ones(2, requires_grad=True)
        w.register_post_accumulate_grad_hook(lambda p: p.grad)
        with pytest.raises(RuntimeError, match="should return None"):
            (w * 2).sum().backward()


def _changed_in_a_hook(lib):
    """A hook that changes a gradient in place (an optimiser step in the backward) while the
    array it came from is still to be read by later nodes."""
    w = lib.tensor([1.0, 1.0, 1.0], requires_grad=True)
    a = lib.tensor([2.0, 2.0, 2.0], requires_grad=True)
    y = w + a * 3.0  # Add hands the same gradient to w and to the product
    w.register_post_accumulate_grad_hook(lambda p: [p.grad.mul_(0.0)] and None)
    (y * lib.tensor([1.0, 2.0, 3.0])).sum().backward()
    return w.grad.tolist(), a.grad.tolist()


def test_a_post_accumulate_hook_changing_a_gradient_leaves_the_others_as_pytorchs():
    assert _changed_in_a_hook(nf) == _changed_in_a_hook(torch) == ([0.0, 0.0, 0.0], [3.0, 6.0, 9.0])


def test_a_retained_gradient_and_a_leafs_gradient_do_not_share_memory():
    w = nf.tensor([1.0, 2.0], requires_grad=True)
    h = nf.tensor([3.0, 4.0], requires_grad=True) * 1.0
    h.retain_grad()
    (w + h).sum().backward()
    w.grad.mul_(0.0)
    assert h.grad.tolist() == [1.0, 1.0]


LIBS = pytest.mark.parametrize("lib", [nf, torch], ids=["numformer", "torch"])


@LIBS
def test_grad_modes_as_pytorchs(lib):
    @lib.no_grad
    def without():
        return lib.is_grad_enabled()

    @lib.inference_mode()
    def inferring():
        return lib.is_grad_enabled(), lib.is_inference_mode_enabled()

    assert without() is False and inferring() == (False, True)
    with lib.inference_mode(False):
        assert lib.is_grad_enabled()
    lib.set_grad_enabled(False)
    assert not lib.is_grad_enabled()
    lib.set_grad_enabled(True)
    with lib.set_grad_enabled(False):
        assert not lib.is_grad_enabled()
    assert lib.is_grad_enabled()


# --- devices, amp, backends, compile ------------------------------------------------------------


def test_cuda_answers_as_pytorchs_cpu_build():
    assert nf.cuda.is_available() is False and nf.cuda.device_count() == 0
    assert nf.cuda.is_bf16_supported() is False
    nf.cuda.manual_seed(3)
    nf.cuda.manual_seed_all(3)
    with pytest.raises(RuntimeError, match="no GPU"):
        nf.cuda.current_device()
    with pytest.raises(RuntimeError, match="mem_get_info: no GPU"):
        nf.cuda.mem_get_info()
    nf.backends.cuda.matmul.allow_tf32 = True
    nf.backends.cudnn.allow_tf32 = True
    nf.backends.cudnn.benchmark = True
    assert nf.backends.mps.is_available() is False
    nf.set_float32_matmul_precision("high")
    assert nf.get_float32_matmul_precision() == "high"
    nf.set_float32_matmul_precision("highest")
    with pytest.raises(ValueError, match="highest"):
        nf.set_float32_matmul_precision("fast")


def test_accelerator_answers_as_pytorchs_on_a_cpu_only_machine():
    """torch.accelerator (PyTorch 2.6+): the same answers and errors as torch's here."""
    for lib in (nf, torch):
        assert lib.accelerator.is_available() is False and lib.accelerator.device_count() == 0
        assert lib.accelerator.current_accelerator() is None
        with pytest.raises(RuntimeError, match="Cannot access accelerator device when none is available"):
            lib.accelerator.current_device_index()


def test_compile_returns_the_model_itself():
    model = nf.nn.Linear(2, 2)
    assert nf.compile(model) is model
    assert nf.compile(mode="max-autotune")(model) is model


def test_autocast_says_it_runs_in_full_precision_and_disables_itself_without_cuda():
    from numformer import amp

    amp._warned.clear()
    with pytest.warns(UserWarning, match="CUDA is not available"):
        with nf.autocast(device_type="cuda", dtype=nf.bfloat16) as ctx:
            assert not ctx.enabled
    with pytest.warns(UserWarning, match="full precision"):
        with nf.amp.autocast("cpu", dtype=nf.bfloat16):
            y = nf.ones(2) @ nf.ones(2)
    assert y.dtype == nf.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with nf.autocast("cpu", enabled=False):
            pass
    with pytest.raises(ValueError, match="device_type"):
        nf.autocast("tpu")


def _scaled_steps(lib, scaler, grads):
    p = lib.nn.Parameter(lib.tensor([1.0, 2.0]))
    opt = lib.optim.SGD([p], lr=0.1)
    out = []
    for g in grads:
        opt.zero_grad()
        loss = (p * lib.tensor(g)).sum()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        scaler.step(opt)
        scaler.update()
        out.append((p.detach().tolist(), scaler.get_scale()))
    return out


def test_grad_scaler_scales_skips_and_adjusts_as_pytorchs():
    grads = [[1.0, 1.0], [float("inf"), 1.0], [0.5, 0.5], [0.5, 0.5], [float("nan"), 0.0], [1.0, 2.0]]
    kwargs = dict(init_scale=1024.0, growth_interval=2)
    ours = _scaled_steps(nf, nf.amp.GradScaler("cpu", **kwargs), grads)
    theirs = _scaled_steps(torch, torch.amp.GradScaler("cpu", **kwargs), grads)
    assert ours == theirs
    off = nf.amp.GradScaler("cpu", enabled=False)
    loss = nf.ones(1).sum()
    assert off.scale(loss) is loss and off.get_scale() == 1.0
    scaler = nf.amp.GradScaler("cpu", **kwargs)
    state = scaler.state_dict()
    other = nf.amp.GradScaler("cpu")
    other.load_state_dict(state)
    assert other.get_scale() == 1024.0


def test_grad_scaler_for_cuda_without_a_gpu_warns_and_passes_through():
    from numformer import amp

    amp._warned.clear()
    with pytest.warns(UserWarning, match="CUDA is not available"):
        scaler = nf.cuda.amp.GradScaler()
    assert not scaler.is_enabled()


# --- tensors and modules as PyTorch programs move them ------------------------------------------


def test_device_moves_accept_pytorchs_arguments():
    x = nf.ones(2)
    assert x.to("cpu", non_blocking=True) is x and x.pin_memory() is x and not x.is_pinned()
    assert x.to(nf.zeros(1, dtype=nf.float64)).dtype == nf.float64
    y = x.to(copy=True)
    assert y is not x and np.array_equal(y.numpy(), x.numpy())
    assert not x.is_cuda
    m = nf.nn.Linear(2, 2)
    assert m.to("cpu", non_blocking=True) is m


# --- optimisers' state in PyTorch's layout ------------------------------------------------------


def _two_layer(lib, seed=0):
    rng = np.random.default_rng(seed)
    w1, w2 = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)
    return [lib.nn.Parameter(lib.tensor(w1)), lib.nn.Parameter(lib.tensor(w2))]


def _adam_steps(lib, params, opt, n, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = lib.tensor(rng.standard_normal((5, 3)).astype(np.float32))
        opt.zero_grad()
        loss = ((x @ params[0].t()).tanh() @ params[1].t()).pow(2).mean()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("direction", ["numformer to PyTorch", "PyTorch to numformer"])
def test_an_optimizer_state_dict_crosses_to_pytorch_and_back(direction):
    """Three Adam steps on one side, the state dict handed to the other, three more there:
    the parameters equal six steps on one side (float32 rounding)."""
    src, dst = (nf, torch) if direction == "numformer to PyTorch" else (torch, nf)
    ref = _two_layer(torch)
    ref_opt = torch.optim.AdamW(ref, lr=0.01, weight_decay=0.1)
    _adam_steps(torch, ref, ref_opt, 6)
    a = _two_layer(src)
    a_opt = src.optim.AdamW(a, lr=0.01, weight_decay=0.1)
    _adam_steps(src, a, a_opt, 3)
    state = a_opt.state_dict()
    if src is nf:  # the values PyTorch's own state dict holds: tensors, and step as a float tensor
        assert isinstance(state["state"][0]["exp_avg"], nf.Tensor) and state["state"][0]["step"].dtype == nf.float32
        state = {
            "state": {i: {k: torch.tensor(v.numpy()) for k, v in s.items()} for i, s in state["state"].items()},
            "param_groups": state["param_groups"],
        }
    b = [dst.nn.Parameter(dst.tensor(np.asarray(p.detach().numpy()))) for p in a]
    b_opt = dst.optim.AdamW(b, lr=0.5)  # the loaded groups bring lr back
    b_opt.load_state_dict(state)
    assert b_opt.param_groups[0]["lr"] == 0.01
    assert set(b_opt.state) == set(b)  # keyed by the parameters, as PyTorch's
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((5, 3)).astype(np.float32) for _ in range(6)]
    for x in batches[3:]:  # the reference's steps 4-6
        b_opt.zero_grad()
        loss = ((dst.tensor(x) @ b[0].t()).tanh() @ b[1].t()).pow(2).mean()
        loss.backward()
        b_opt.step()
    for p, q in zip(b, ref):
        np.testing.assert_allclose(np.asarray(p.detach().numpy()), q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_an_optimizer_state_of_the_wrong_shape_is_refused_with_the_key_named():
    params = _two_layer(nf)
    opt = nf.optim.Adam(params)
    _adam_steps(nf, params, opt, 1)
    state = opt.state_dict()
    state["state"][0]["exp_avg"] = nf.zeros(3, 3)
    with pytest.raises(ValueError, match="'exp_avg' has shape \\(3, 3\\), its parameter \\(4, 3\\)"):
        nf.optim.Adam(_two_layer(nf)).load_state_dict(state)


@LIBS
def test_a_step_counts_as_an_in_place_change_and_closure_returns_the_loss(lib):
    p = lib.nn.Parameter(lib.tensor([1.0, 2.0]))
    opt = lib.optim.SGD([p], lr=0.1)
    loss = (p * p).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()  # p changed after the graph saved it

    def closure():
        opt.zero_grad()
        out = (p * 3).sum()
        out.backward()
        return out

    before = float((p * 3).sum().detach())
    assert float(opt.step(closure)) == pytest.approx(before)  # the loss before the update
    assert float((p * 3).sum().detach()) == pytest.approx(before - 3 * 0.1 * 3 * 2)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_optimizers_take_pytorchs_arguments_with_its_defaults(name):
    ours = inspect.signature(getattr(nf.optim, name)).parameters
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    assert list(ours) == list(theirs)
    for key, p in ours.items():
        assert p.kind == theirs[key].kind, key
        if key != "lr" and theirs[key].default is not inspect.Parameter.empty:
            assert p.default == theirs[key].default, key
    with pytest.raises(NotImplementedError, match="differentiable"):
        getattr(nf.optim, name)([nf.nn.Parameter(nf.zeros(1))], differentiable=True)


# PyTorch constructor arguments numformer does not take (each refused as an unexpected keyword)
_MODULE_ARGS_NOT_TAKEN = {
    "BatchNorm1d": {"bias"},
    "BatchNorm2d": {"bias"},
    "Embedding": {"max_norm", "norm_type", "scale_grad_by_freq", "sparse", "_weight", "_freeze"},
    "MultiheadAttention": {"add_bias_kv", "add_zero_attn"},
    "RNNBase": {"mode"},
}


def test_module_constructors_take_pytorchs_arguments():
    """Every nn class both libraries have takes PyTorch's constructor arguments (``device=`` and
    ``dtype=`` included), but for the few listed above."""
    import inspect

    gaps = {}
    for name in dir(nf.nn):
        ours, theirs = getattr(nf.nn, name), getattr(torch.nn, name, None)
        if not (inspect.isclass(ours) and inspect.isclass(theirs)) or theirs.__init__ is object.__init__:
            continue
        mine = inspect.signature(ours.__init__).parameters
        wanted = [
            k
            for k, p in inspect.signature(theirs.__init__).parameters.items()
            if k != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        missing = {k for k in wanted if k not in mine}
        if missing != _MODULE_ARGS_NOT_TAKEN.get(name, set()):
            gaps[name] = sorted(missing)
    assert not gaps, gaps
    layer = nf.nn.TransformerEncoderLayer(8, 2, 16, device=nf.device("cpu"), dtype=nf.float64)
    assert {p.dtype for p in layer.parameters()} == {np.dtype(np.float64)}
    assert nf.nn.LSTM(3, 4, device="cpu").weight_ih_l0.shape == (16, 3)

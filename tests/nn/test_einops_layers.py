"""numformer.nn.einops: einops' layers on numformer modules give einops.layers.torch's
values, gradients and state-dict keys; a PyTorch einops layer is refused with the way out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numformer as nf
from helpers import TOL, randn

pytest.importorskip("einops")
import einops.layers.torch as theirs  # noqa: E402

from numformer.nn import einops as ours  # noqa: E402


def _both(make_ours, make_theirs, shape, seed=0):
    """Outputs and input gradients of both layers (ours given torch's weights) on one input."""
    layer_t = make_theirs()
    layer_n = make_ours()
    layer_n.load_state_dict({k: v.detach().numpy() for k, v in layer_t.state_dict().items()})
    x = randn(seed, shape).astype(np.float32)
    xn, xt = nf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yn, yt = layer_n(xn), layer_t(xt)
    g = randn(seed + 1, tuple(yt.shape)).astype(np.float32)
    yn.backward(nf.tensor(g))
    yt.backward(torch.tensor(g))
    return layer_n, layer_t, (yn, yt), (xn.grad, xt.grad)


@pytest.mark.parametrize(
    "name,args,kwargs,shape",
    [
        ("Rearrange", ("b c (h p) (w q) -> b (h w) (p q c)",), {"p": 2, "q": 2}, (2, 3, 4, 6)),
        ("Reduce", ("b c (h 2) (w 2) -> b c h w", "max"), {}, (2, 3, 4, 6)),
        ("Reduce", ("b t d -> b d", "mean"), {}, (2, 5, 4)),
        (
            "EinMix",
            ("b t cin -> b t cout",),
            {"weight_shape": "cin cout", "bias_shape": "cout", "cin": 4, "cout": 6},
            (2, 3, 4),
        ),
        ("EinMix", ("b (t k) c -> b t d",), {"weight_shape": "k c d", "k": 2, "c": 3, "d": 5}, (2, 6, 3)),
    ],
)
def test_layers_as_einops_torch_layers(name, args, kwargs, shape):
    layer_n, layer_t, outs, grads = _both(
        lambda: getattr(ours, name)(*args, **kwargs), lambda: getattr(theirs, name)(*args, **kwargs), shape
    )
    assert sorted(dict(layer_n.named_parameters())) == sorted(dict(layer_t.named_parameters()))
    assert repr(layer_n) == repr(layer_t)
    np.testing.assert_allclose(outs[0].numpy(), outs[1].detach().numpy(), **TOL[np.float32])
    np.testing.assert_allclose(grads[0].numpy(), grads[1].numpy(), **TOL[np.float32])
    if name == "EinMix":  # the weights are trained: their gradients agree too
        for (key, p), q in zip(sorted(layer_n.named_parameters()), (q for _, q in sorted(layer_t.named_parameters()))):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), **TOL[np.float32], err_msg=key)


def test_layers_sit_in_a_sequential_and_torchs_are_refused_naming_ours():
    model = nf.nn.Sequential(
        ours.Rearrange("b c h w -> b (h w) c"), nf.nn.Linear(3, 2), ours.Reduce("b n d -> b d", "sum")
    )
    assert model(nf.zeros(2, 3, 4, 4)).shape == (2, 2)
    with pytest.raises(
        TypeError, match=r"einops\.layers\.torch\.Rearrange is not a Module subclass.*numformer\.nn\.einops\.Rearrange"
    ):
        nf.nn.Sequential(theirs.Rearrange("b c -> c b"))


def test_a_model_of_einops_layers_saves_and_loads_whole(tmp_path):
    """Their state is plain data (patterns, lengths, parameters): ``save(model)`` and ``load``
    (which runs no code from the file) give the same model."""
    nf.manual_seed(0)
    model = nf.nn.Sequential(
        ours.EinMix("b (t k) c -> b t d", weight_shape="k c d", bias_shape="d", k=2, c=3, d=4),
        ours.Rearrange("b t d -> b d t"),
        ours.Reduce("b d t -> b d", "max"),
    )
    nf.save(model, tmp_path / "model.pt")
    loaded = nf.load(tmp_path / "model.pt")
    x = nf.randn(2, 4, 3)
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_the_docstring_examples_run():
    import doctest

    result = doctest.testmod(ours, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0

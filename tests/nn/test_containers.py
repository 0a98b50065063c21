"""Containers refuse what is not a numformer Module, as PyTorch's do (issue #35: an einops layer
in ``nn.Sequential`` was dropped silently and failed layers later); PyTorch's container API;
``nn.modules.*`` import paths."""

from __future__ import annotations

import importlib
from collections import OrderedDict

import numpy as np
import pytest
import torch

import numformer as nf
from numformer import nn


class Rearrange(torch.nn.Module):
    """A stand-in for ``einops.layers.torch.Rearrange``: a PyTorch module, foreign to numformer."""

    def forward(self, x):
        return x


@pytest.mark.parametrize(
    "build",
    [
        lambda bad: nn.Sequential(nn.Linear(2, 2), bad, nn.LayerNorm(2)),
        lambda bad: nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("bad", bad)])),
        lambda bad: nn.Sequential(nn.Linear(2, 2)).append(bad),
        lambda bad: nn.Sequential(nn.Linear(2, 2)).insert(0, bad),
        lambda bad: nn.ModuleList([nn.Linear(2, 2), bad]),
        lambda bad: nn.ModuleList().append(bad),
        lambda bad: nn.ModuleList([nn.ReLU()]).insert(0, bad),
        lambda bad: nn.ModuleDict({"fc": nn.Linear(2, 2), "bad": bad}),
        lambda bad: nn.Module().add_module("bad", bad),
    ],
)
def test_containers_refuse_a_foreign_object_naming_its_type(build):
    with pytest.raises(TypeError, match=r"test_containers\.Rearrange is not a Module subclass.*PyTorch module"):
        build(Rearrange())
    with pytest.raises(TypeError, match=r"^function is not a Module subclass .*wrap the function in a Module"):
        build(lambda x: x)
    with pytest.raises(TypeError, match=r"^int is not a Module subclass"):
        build(3)


def test_pytorch_refuses_the_same():
    """The rule is PyTorch's: its containers raise TypeError for a non-Module too."""
    with pytest.raises(TypeError, match="is not a Module subclass"):
        torch.nn.Sequential(torch.nn.Linear(2, 2), lambda x: x)


def test_assigning_a_non_module_over_a_child_module_is_refused():
    model = nn.Sequential(nn.Linear(2, 2))
    holder = nn.Module()
    holder.fc = nn.Linear(2, 3)
    with pytest.raises(TypeError, match=r"cannot assign 'int' as child module 'fc' \(numformer.nn.Module or None"):
        holder.fc = 3
    holder.fc = None  # allowed, as in PyTorch
    holder.fc = nn.Linear(2, 3)
    holder.other = 3  # a plain attribute stays plain
    assert [name for name, _ in holder.named_children()] == ["fc"]
    with pytest.raises(KeyError, match=r"module name can.+t be empty or contain"):
        model.add_module("a.b", nn.ReLU())
    with pytest.raises(KeyError, match="attribute 'other' already exists"):
        holder.add_module("other", nn.ReLU())


def test_sequential_from_an_ordered_dict_and_its_list_api():
    seq = nn.Sequential(OrderedDict([("conv", nn.Conv1d(2, 3, 1)), ("act", nn.ReLU()), ("fc", nn.Linear(4, 1))]))
    assert list(seq.state_dict()) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    t_seq = torch.nn.Sequential(
        OrderedDict([("conv", torch.nn.Conv1d(2, 3, 1)), ("act", torch.nn.ReLU()), ("fc", torch.nn.Linear(4, 1))])
    )
    assert list(seq.state_dict()) == list(t_seq.state_dict())
    assert (
        seq[-1] is seq.fc
        and isinstance(seq[1:], nn.Sequential)
        and list(seq[1:].state_dict()) == ["fc.weight", "fc.bias"]
    )
    assert len(seq) == 3 and [type(m).__name__ for m in seq] == ["Conv1d", "ReLU", "Linear"]
    plain = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    del plain[1]
    assert [name for name, _ in plain.named_children()] == ["0", "1"]  # renumbered, as PyTorch's
    plain.append(nn.Tanh()).insert(0, nn.Identity())
    assert [type(m).__name__ for m in plain] == ["Identity", "Linear", "Linear", "Tanh"]
    plain[0] = nn.ReLU()
    assert isinstance(plain[0], nn.ReLU)
    with pytest.raises(IndexError, match="Sequential: index 7 is out of range for 4 modules"):
        plain[7]
    x = nf.randn(3, 2)
    np.testing.assert_allclose(plain(x).numpy(), plain[3](plain[2](plain[1](plain[0](x)))).numpy())


def test_module_list_dict_and_parameter_containers():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers += [nn.ReLU()]
    layers.insert(1, nn.Tanh())
    del layers[0]
    assert [type(m).__name__ for m in layers] == ["Tanh", "Linear", "Linear", "ReLU"]
    assert list(layers.state_dict())[:2] == ["1.weight", "1.bias"]
    blocks = nn.ModuleDict({"a": nn.Linear(2, 2)})
    blocks.update({"b": nn.ReLU()})
    assert "b" in blocks and blocks.pop("b").__class__ is nn.ReLU and "b" not in blocks
    with pytest.raises(KeyError):
        blocks["missing"]
    params = nn.ParameterList([nf.randn(2), nn.Parameter(nf.randn(3))])
    params.append(nf.zeros(4))
    assert [tuple(p.shape) for p in params] == [(2,), (3,), (4,)] and all(isinstance(p, nn.Parameter) for p in params)
    bag = nn.ParameterDict({"scale": nf.ones(2)})
    bag["shift"] = nf.zeros(2)
    owner = nn.Module()
    owner.params, owner.bag = params, bag
    names = [n for n, _ in owner.named_parameters()]
    assert names == ["params.0", "params.1", "params.2", "bag.scale", "bag.shift"]
    t_owner = torch.nn.Module()
    t_owner.params = torch.nn.ParameterList([torch.zeros(2), torch.zeros(3), torch.zeros(4)])
    t_owner.bag = torch.nn.ParameterDict({"scale": torch.ones(2), "shift": torch.zeros(2)})
    assert names == [n for n, _ in t_owner.named_parameters()]
    with pytest.raises(TypeError, match="ParameterList: str is not a Tensor or Parameter"):
        params.append("weights")


MODULE_PATHS = {
    "module": ["Module"],
    "linear": ["Linear", "Identity"],
    "activation": ["ReLU", "GELU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "LeakyReLU", "MultiheadAttention"],
    "loss": ["_Loss", "_WeightedLoss", "CrossEntropyLoss", "NLLLoss", "MSELoss", "BCEWithLogitsLoss", "KLDivLoss"],
    "conv": ["Conv1d", "Conv2d", "_ConvNd"],
    "rnn": ["RNN", "LSTM", "GRU", "RNNBase"],
    "transformer": ["Transformer", "TransformerEncoder", "TransformerEncoderLayer", "TransformerDecoderLayer"],
    "normalization": ["LayerNorm"],
    "batchnorm": ["BatchNorm1d", "BatchNorm2d", "_BatchNorm"],
    "sparse": ["Embedding"],
    "dropout": ["Dropout", "Dropout1d", "Dropout2d"],
    "container": ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"],
    "pooling": ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d"],
    "flatten": ["Flatten", "Unflatten"],
    "distance": ["CosineSimilarity"],
}


@pytest.mark.parametrize("submodule", sorted(MODULE_PATHS))
def test_nn_modules_import_paths_are_pytorchs(submodule):
    """``torch.nn.modules.<submodule>.<Name>`` exists in PyTorch and is numformer's own class
    (re-exported, not defined twice) under ``numformer.nn.modules.<submodule>``."""
    ours = importlib.import_module(f"numformer.nn.modules.{submodule}")
    theirs = importlib.import_module(f"torch.nn.modules.{submodule}")
    for name in MODULE_PATHS[submodule]:
        assert hasattr(theirs, name), (submodule, name)
        cls = getattr(ours, name)
        assert getattr(nn.modules, name) is cls
        if not name.startswith("_"):
            assert getattr(nn, name) is cls


def test_a_program_written_for_torch_runs_on_the_import_paths():
    import numformer.nn.modules.loss as loss_module
    from numformer.nn.modules.conv import _ConvNd
    from numformer.nn.modules.loss import _Loss

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    convs = [m for m in model.modules() if isinstance(m, _ConvNd)]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(convs) == 1 and len(norms) == 1
    criterion = loss_module.CrossEntropyLoss()
    assert isinstance(criterion, _Loss)
    loss = criterion(model(nf.randn(4, 1, 6, 6)), np.array([0, 1, 2, 0]))
    loss.backward()
    assert convs[0].weight.grad is not None

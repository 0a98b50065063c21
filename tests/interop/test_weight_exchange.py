"""``numformer.interop``: state dicts to and from PyTorch modules built the same way, and
``numformer.serialization``'s safetensors files, with outputs equal on both sides."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import numformer as nf
from numformer import nn
from numformer.interop import from_torch_state_dict, load_torch_state_dict, to_torch_state_dict
from numformer.serialization.safetensors import load_arrays, load_model, save_arrays, save_model

PAIRS = {
    "encoder_layer": (
        lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
        lambda: torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
        (2, 5, 8),
    ),
    "lstm": (
        lambda: nn.LSTM(6, 5, num_layers=2, batch_first=True),
        lambda: torch.nn.LSTM(6, 5, 2, batch_first=True),
        (3, 4, 6),
    ),
    "layer_norm": (lambda: nn.LayerNorm(7), lambda: torch.nn.LayerNorm(7), (3, 7)),
}


def _out(module, x):
    y = module(x)
    return y[0] if isinstance(y, tuple) else y


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_round_trip_through_pytorch_modules(name):
    make_nf, make_torch, shape = PAIRS[name]
    nf.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = make_nf().eval(), make_torch().eval()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    # numformer -> PyTorch: every name and shape accepted strictly, the same outputs
    theirs.load_state_dict(to_torch_state_dict(ours), strict=True)
    with torch.no_grad(), nf.no_grad():
        np.testing.assert_allclose(
            _out(theirs, torch.from_numpy(x)).numpy(), _out(ours, nf.tensor(x)).array, rtol=1e-5, atol=1e-5
        )
    # PyTorch -> numformer: a fresh torch init comes back and computes the same
    torch.manual_seed(1)
    fresh = make_torch().eval()
    load_torch_state_dict(ours, fresh.state_dict())
    with torch.no_grad(), nf.no_grad():
        np.testing.assert_allclose(
            _out(fresh, torch.from_numpy(x)).numpy(), _out(ours, nf.tensor(x)).array, rtol=1e-5, atol=1e-5
        )
    back = from_torch_state_dict(to_torch_state_dict(ours))
    assert list(back) == list(ours.state_dict())
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(back[k], v)


def test_safetensors_round_trip_and_errors(tmp_path):
    nf.manual_seed(0)
    model = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    path = save_model(model, tmp_path / "layer.safetensors")
    assert not list(tmp_path.glob(".*.tmp"))  # written to a temporary name, then renamed
    other = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    load_model(other, path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    smaller = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True)
    with pytest.raises(
        ValueError, match=r"(?s)layer.safetensors: .*linear1.weight: expected shape \(12, 8\), got \(16, 8\)"
    ):
        load_model(smaller, path)
    save_arrays({"a": np.arange(3.0)}, tmp_path / "m.safetensors", metadata={"source": "test", "n": 3})
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"source": "test", "n": "3"}
    np.testing.assert_array_equal(load_arrays(tmp_path / "m.safetensors")["a"], np.arange(3.0))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(ValueError, match="bad.safetensors is truncated or not a safetensors file"):
        load_arrays(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_arrays(tmp_path / "none.safetensors")


def test_interop_imports_pytorch_only_when_called():
    code = (
        "import sys, numformer.interop, numformer.models, numformer.models.bert, numformer.models.sentence;"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

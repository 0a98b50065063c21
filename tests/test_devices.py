"""Device placement as PyTorch users know it (``.to("cuda")``, ``.cpu()``, ``.device``,
``Module.to``, ``device=`` in factories, errors for mixed devices and for ``numpy()`` off the
host), proved without a GPU: the stand-in array module is registered as the "cuda" device, so
every move really changes the array type, and a NumPy array reaching a device op raises."""

from __future__ import annotations

import numpy as np
import pytest

import numformer as nf
from helpers import TINY
from numformer import backend
from numformer.backend import to_numpy
from numformer.models import GPT, GPTConfig
from numformer.testing import StandInArray, stand_in_arrays


@pytest.fixture()
def cuda():
    """The stand-in as device "cuda"; NumPy and no accelerator again afterwards."""
    saved = dict(backend._DEVICE_MODULES)
    backend.register_device("cuda", stand_in_arrays())
    try:
        yield
    finally:
        backend._DEVICE_MODULES.clear()
        backend._DEVICE_MODULES.update(saved)
        backend.set_array_module(np)


def test_tensors_move_and_come_back(cuda):
    t = nf.tensor([1.0, 2.0, 3.0])
    assert t.device == "cpu" and str(t.device) == "cpu"
    g = t.to("cuda")
    assert isinstance(g.array, StandInArray) and g.device == "cuda" and str(g.device) == "cuda:0"
    assert repr(g.device) == "device(type='cuda', index=0)"
    back = g.cpu()
    assert isinstance(back.array, np.ndarray) and back.tolist() == [1.0, 2.0, 3.0]
    assert t.to("cpu") is t and g.to("cuda:0") is g  # nothing to move
    both = t.to("cuda", np.float64)
    assert both.device == "cuda" and both.dtype == np.float64
    assert nf.tensor(g).device == "cuda"  # a device array stays where it is
    w = nf.randn(3, requires_grad=True).to("cuda")
    assert w.requires_grad and w.grad is None


def test_numpy_off_the_host_refuses_as_pytorch_does(cuda):
    g = nf.ones(2, device="cuda")
    with pytest.raises(TypeError, match=r"on cuda:0; copy it to the host with \.cpu\(\)\.numpy\(\) first"):
        g.numpy()
    np.testing.assert_array_equal(g.cpu().numpy(), [1.0, 1.0])


def test_an_op_on_two_devices_names_both(cuda):
    with pytest.raises(RuntimeError, match="got tensors on cpu and cuda:0; move them with .to()"):
        nf.ones(2) + nf.ones(2, device="cuda")
    w = nf.ones(2, 2, device="cuda", requires_grad=True)
    with pytest.raises(RuntimeError, match="on one device"):
        w @ nf.ones(2, 2)
    with pytest.raises(RuntimeError, match="computed in a graph"):
        (w * 2).to("cpu")


def test_factories_take_a_device_and_draws_are_the_same_everywhere(cuda):
    for make in (nf.zeros, nf.ones, nf.randn, nf.rand):
        assert make(2, 3, device="cuda").device == "cuda"
    assert nf.arange(4, device="cuda").device == "cuda"
    assert nf.zeros_like(nf.ones(2, device="cuda")).device == "cuda"
    nf.manual_seed(3)
    host = nf.randn(4, 5)
    nf.manual_seed(3)
    device = nf.randn(4, 5, device="cuda")
    np.testing.assert_array_equal(device.cpu().numpy(), host.numpy())


def test_a_model_trains_on_the_device_with_the_hosts_bits(cuda, tmp_path):
    def run(device):
        nf.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, d_model=16, dropout=0.1))
        model.to(device)
        opt = nf.optim.AdamW(model.parameters(), lr=1e-2)
        idx = np.random.default_rng(0).integers(0, 20, (3, 8))
        for _ in range(3):
            opt.zero_grad()
            _, loss = model(idx, idx)  # host ids: the model reads them on its device
            loss.backward()
            opt.step()
        assert {type(p.array) for p in model.parameters()} == {StandInArray if device == "cuda" else np.ndarray}
        with nf.no_grad():
            tokens = model.generate([[1, 2, 3]], max_new_tokens=4, seed=0)
        return model, float(loss.item()), tokens

    cpu_model, cpu_loss, cpu_tokens = run("cpu")
    gpu_model, gpu_loss, gpu_tokens = run("cuda")
    assert gpu_loss == cpu_loss and gpu_tokens == cpu_tokens  # the stand-in computes with NumPy: same bits
    # a model saved from the device loads on the host and back
    gpu_model.save(tmp_path / "m")
    loaded, _, _ = GPT.load(tmp_path / "m")  # new tensors are made where xp computes: the device, now
    for (k, a), b in zip(cpu_model.state_dict().items(), loaded.state_dict().values()):
        np.testing.assert_array_equal(a, to_numpy(b), err_msg=k)
    loaded.to("cuda")
    assert all(isinstance(p.array, StandInArray) for p in loaded.parameters())
    loaded.to("cpu")
    assert all(isinstance(p.array, np.ndarray) for p in loaded.parameters())


def test_device_names_are_checked():
    for bad in ("gpu", "cuda:x", "cpu:0", "cuda:1"):
        with pytest.raises(ValueError, match="device"):
            backend.Device(bad)
    with pytest.raises(TypeError, match="device"):
        backend.Device(3)
    assert backend.Device("cuda") == "cuda:0" and backend.Device("cpu") != "cuda"


def test_cuda_without_cupy_says_how_to_get_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy fails
    monkeypatch.delitem(backend._DEVICE_MODULES, "cuda", raising=False)
    with pytest.raises(RuntimeError, match=r"pip install 'numformer\[gpu\]'"):
        nf.ones(2).to("cuda")


def test_numformer_train_and_generate_take_device_cuda(cuda, tmp_path, capsys):
    from numformer.cli import main

    data = tmp_path / "d.txt"
    data.write_text("the cat sat on the mat. " * 200)
    tiny = [*TINY, "--data", str(data), "--sample-prompt", "the", "--max-steps", "3", "--dropout", "0.0"]
    assert main(["train", *tiny, "--out", str(tmp_path / "gpu"), "--device", "cuda"]) == 0
    backend.set_array_module(np)
    assert main(["train", *tiny, "--out", str(tmp_path / "cpu")]) == 0
    from numformer.serialization.safetensors import load_arrays

    a, b = (load_arrays(tmp_path / run / "model" / "model.safetensors") for run in ("cpu", "gpu"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # same files from either device
    capsys.readouterr()
    prompt = ["generate", "--model", str(tmp_path / "gpu"), "--prompt", "the", "--max-new-tokens", "5", "--seed", "1"]
    assert main([*prompt, "--device", "cuda"]) == 0
    on_device = capsys.readouterr().out
    backend.set_array_module(np)
    assert main(prompt) == 0
    assert capsys.readouterr().out == on_device
    assert main([*prompt, "--device", "tpu"]) == 2
    assert "--device: device: expected 'cpu', 'cuda'" in capsys.readouterr().err

"""The GPU backend on a real NVIDIA GPU (CuPy): numformer on "cuda" against numformer on the
CPU, values and gradients, at float32 tolerances (rtol 1e-4, atol 1e-5: cuBLAS and CuPy's
reductions sum in another order than OpenBLAS and NumPy).

Selected with ``NUMFORMER_TEST_DEVICE=cuda`` on a machine with a GPU and the ``gpu`` extra
(``pip install 'numformer[gpu]'``); skipped, with the reason, everywhere else. The device
logic itself (placement, errors, round trips) is tested without a GPU in tests/test_devices.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import numformer as nf
from numformer import backend
from numformer.backend import to_numpy
from numformer.models import GPT, GPTConfig
from numformer.nn import functional as F


def _gpu_reason() -> str | None:
    if os.environ.get("NUMFORMER_TEST_DEVICE") != "cuda":
        return "GPU tests run with NUMFORMER_TEST_DEVICE=cuda on a machine with an NVIDIA GPU"
    try:
        backend.device_module("cuda")
    except RuntimeError as err:
        return str(err)
    return None


pytestmark = pytest.mark.skipif(_gpu_reason() is not None, reason=_gpu_reason() or "")
TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(autouse=True)
def _host_after():
    yield
    backend.set_array_module(np)


OPS = {
    "linear": lambda x, w: F.linear(x, w),
    "gelu": lambda x, w: F.gelu(x @ w),
    "layer_norm": lambda x, w: F.layer_norm(x @ w, (w.shape[1],)),
    "softmax": lambda x, w: F.softmax(x @ w, dim=-1),
    "attention": lambda x, w: F.scaled_dot_product_attention(x @ w, x @ w, x @ w, is_causal=True),
    "cross_entropy": lambda x, w: F.cross_entropy(
        (x @ w).reshape(-1, w.shape[1]), np.arange(x.shape[0] * x.shape[1]) % w.shape[1]
    ),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_match_the_cpu_in_values_and_gradients(name):
    r = np.random.default_rng(0)
    x, w = r.standard_normal((4, 8, 16)).astype(np.float32), (r.standard_normal((16, 16)) / 4).astype(np.float32)
    results = {}
    for device in ("cpu", "cuda"):
        tx = nf.tensor(x, requires_grad=True, device=device)
        tw = nf.tensor(w, requires_grad=True, device=device)
        out = OPS[name](tx, tw)
        out.sum().backward() if out.ndim == 0 else (out * out).sum().backward()
        results[device] = [to_numpy(out.array), to_numpy(tx.grad.array), to_numpy(tw.grad.array)]
        assert tx.device == device
    for a, b in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(b, a, **TOL)


def test_gpt_trains_and_generates_on_the_gpu_as_on_the_cpu(tmp_path):
    def run(device):
        nf.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=4, d_model=64)).to(device)
        opt = model.configure_optimizers(0.1, 1e-3)
        idx = np.random.default_rng(0).integers(0, 64, (4, 32))
        for _ in range(5):
            opt.zero_grad()
            _, loss = model(idx, idx)
            loss.backward()
            opt.step()
        with nf.no_grad():
            logits, _ = model(idx[:, :8])
        return model, float(loss.item()), to_numpy(logits.array)

    _, cpu_loss, cpu_logits = run("cpu")
    gpu_model, gpu_loss, gpu_logits = run("cuda")
    assert abs(gpu_loss - cpu_loss) < 1e-4
    np.testing.assert_allclose(gpu_logits, cpu_logits, **TOL)
    gpu_model.save(tmp_path / "m")
    backend.set_array_module(np)
    loaded, _, _ = GPT.load(tmp_path / "m")
    with nf.no_grad():
        np.testing.assert_allclose(
            to_numpy(loaded(np.arange(8)[None])[0].array),
            to_numpy(gpu_model.to("cpu")(np.arange(8)[None])[0].array),
            **TOL,
        )
    tokens = loaded.to("cuda").generate([[1, 2, 3]], max_new_tokens=8, seed=0)
    assert len(tokens[0]) == 11


def test_a_run_too_large_for_the_gpus_free_memory_is_refused_with_the_figure():
    from numformer.train.lm import RunConfig, check_fits, training_memory

    free, total = nf.cuda.mem_get_info()
    assert 0 < free <= total
    small = RunConfig().updated({"n_layer": 1, "d_model": 16, "n_head": 2, "batch_size": 2, "block_size": 8})
    check_fits(small, 20, device="cuda")  # a few kilobytes: fits
    per_layer = training_memory(small.updated({"n_layer": 2}), 20)[1] - training_memory(small, 20)[1]
    layers = free // per_layer + 1  # just past the free memory
    with pytest.raises(ValueError, match=r"too large to train here.*the GPU \(cuda\) has"):
        check_fits(small.updated({"n_layer": int(layers)}), 20, device="cuda")

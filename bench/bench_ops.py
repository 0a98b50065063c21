"""Fused attention (forward+backward, and inference), add & layer norm, a plain matmul chain,
and LSTM and GRU layers' forward+backward (the recurrent baseline's shape), numformer vs PyTorch
(CPU).

Run: ``make bench`` or ``.venv/bin/python bench/bench_ops.py``. Prints ratios of medians
(numformer / PyTorch; < 1 means numformer is faster), with min and max over paired runs, and
writes them with the machine's description to ``bench/results/ops.json``.
"""

from __future__ import annotations

# isort: off
from common import ALLOCATOR_TUNED, compare, print_table  # first: pins BLAS threads before NumPy loads

# isort: on
import json
from pathlib import Path

import numpy as np
import torch

import numformer as nf
from numformer.nn import functional as F
from timing import machine

RESULTS = Path(__file__).parent / "results"


def attention_case(batch, heads, T, d, causal):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((batch, heads, T, d)).astype(np.float32) for _ in range(3)]
    g = rng.standard_normal((batch, heads, T, d)).astype(np.float32)

    def run_nf():
        q, k, v = (nf.Tensor(a, requires_grad=True) for a in arrays)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out.backward(g)

    tg = torch.from_numpy(g)

    def run_torch():
        q, k, v = (torch.tensor(a, requires_grad=True) for a in arrays)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out.backward(tg)

    name = f"attention fwd+bwd B{batch} H{heads} T{T} d{d}{' causal' if causal else ''}"
    return compare(name, run_nf, run_torch)


def attention_inference_case(batch, heads, T, d):
    """Forward only, nothing to keep for backward: the encoder's attention at inference."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((batch, heads, T, d)).astype(np.float32) for _ in range(3)]
    nf_in, torch_in = [nf.Tensor(a) for a in arrays], [torch.from_numpy(a) for a in arrays]

    def run_nf():
        with nf.no_grad():
            F.scaled_dot_product_attention(*nf_in)

    def run_torch():
        with torch.no_grad():
            torch.nn.functional.scaled_dot_product_attention(*torch_in)

    return compare(f"attention inference B{batch} H{heads} T{T} d{d}", run_nf, run_torch)


def add_layer_norm_case(rows, n):
    """Post-LN's norm(x + sublayer(x)) at inference: one fused kernel against PyTorch's add and
    layer norm (two kernels; its encoder fast path fuses them into one)."""
    rng = np.random.default_rng(2)
    x, r, w, b = (rng.standard_normal(shape).astype(np.float32) for shape in ((rows, n), (rows, n), n, n))
    nf_in, torch_in = [nf.Tensor(a) for a in (x, r, w, b)], [torch.from_numpy(a) for a in (x, r, w, b)]

    def run_nf():
        with nf.no_grad():
            F.add_layer_norm(nf_in[0], nf_in[1], (n,), nf_in[2], nf_in[3])

    def run_torch():
        with torch.no_grad():
            torch.nn.functional.layer_norm(torch_in[0] + torch_in[1], (n,), torch_in[2], torch_in[3])

    return compare(f"add & layer norm inference {rows}x{n}", run_nf, run_torch, calls=10)


def matmul_chain_case(n, depth):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, n)).astype(np.float32)
    ws = [(rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32) for _ in range(depth)]

    def run_nf():
        h = nf.Tensor(x, requires_grad=True)
        params = [nf.Tensor(w, requires_grad=True) for w in ws]
        for w in params:
            h = (h @ w).tanh()
        h.sum().backward()

    def run_torch():
        h = torch.tensor(x, requires_grad=True)
        params = [torch.tensor(w, requires_grad=True) for w in ws]
        for w in params:
            h = (h @ w).tanh()
        h.sum().backward()

    return compare(f"matmul+tanh chain fwd+bwd n{n} depth{depth}", run_nf, run_torch)


RECURRENT_TARGET = 1.3  # LSTM and GRU forward+backward: at most 1.3x PyTorch's time


def recurrent_case(kind, batch, T, hidden):
    """``nn.LSTM`` or ``nn.GRU`` (``kind``) forward+backward over a whole sequence, as the
    SASRec app's recurrent baseline trains (batch 64, 200 steps, 64 units): the time loop is
    each library's own kernel. Both batch-first."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((batch, T, hidden)).astype(np.float32)
    g = rng.standard_normal((batch, T, hidden)).astype(np.float32)
    nf_layer = getattr(nf.nn, kind)(hidden, hidden, batch_first=True)
    torch_layer = getattr(torch.nn, kind)(hidden, hidden, batch_first=True)
    tg = torch.from_numpy(g)

    def run_nf():
        out, _ = nf_layer(nf.Tensor(x, requires_grad=True))
        out.backward(g)

    def run_torch():
        out, _ = torch_layer(torch.tensor(x, requires_grad=True))
        out.backward(tg)

    return compare(f"{kind} fwd+bwd B{batch} T{T} H{hidden}", run_nf, run_torch)


def main():
    rows = [
        attention_case(4, 8, 128, 64, causal=False),
        attention_case(4, 8, 128, 64, causal=True),
        attention_case(1, 8, 1024, 64, causal=True),
        attention_inference_case(16, 8, 128, 32),
        add_layer_norm_case(2048, 256),
        matmul_chain_case(256, 4),
        matmul_chain_case(1024, 4),
        recurrent_case("LSTM", 64, 200, 64),
        recurrent_case("GRU", 64, 200, 64),
    ]
    print_table(rows)
    for row in rows:  # the goals where it sets one
        if row["name"].startswith(("LSTM", "GRU")):
            row.update(target=RECURRENT_TARGET, met=row["ratio"] <= RECURRENT_TARGET)
    results = {"machine": machine(tuned_allocator=bool(ALLOCATOR_TUNED)), "rows": rows}
    (RESULTS / "ops.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {RESULTS / 'ops.json'}")


if __name__ == "__main__":
    main()

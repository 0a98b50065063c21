"""Fused attention forward+backward and a plain matmul chain, numformer vs PyTorch (CPU).

Run: ``make bench`` or ``.venv/bin/python bench/bench_ops.py``. Prints ratios of medians
(numformer / PyTorch; < 1 means numformer is faster), with min and max over paired runs.
"""

from __future__ import annotations

# isort: off
from common import compare, print_table  # first: pins BLAS threads before NumPy loads

# isort: on
import numpy as np
import torch

import numformer as nf
from numformer.nn import functional as F


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


def main():
    rows = [
        attention_case(4, 8, 128, 64, causal=False),
        attention_case(4, 8, 128, 64, causal=True),
        attention_case(1, 8, 1024, 64, causal=True),
        matmul_chain_case(256, 4),
        matmul_chain_case(1024, 4),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()

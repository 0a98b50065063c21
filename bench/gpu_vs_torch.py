"""The GPU backend against PyTorch CUDA eager: GPT training steps at the suite's three sizes,
the same weights on both, ratios of medians (numformer / PyTorch). (Generation is not timed
here yet.)

Needs an NVIDIA GPU, CuPy (``pip install 'numformer[gpu]'``) and a CUDA build of PyTorch; on any
other machine it says so and exits 0. Every timed block ends with both libraries'
``synchronize`` (GPU work is asynchronous). Run: ``.venv/bin/python bench/gpu_vs_torch.py``.
Not yet run on a GPU (no machine with one was available when it was written).
"""

from __future__ import annotations

import sys

import numpy as np

from timing import compare


def main() -> int:
    import torch

    from numformer import backend

    try:
        cupy = backend.device_module("cuda")
    except RuntimeError as err:
        print(f"skipped: {err}")
        return 0
    if not torch.cuda.is_available():
        print("skipped: this PyTorch has no CUDA")
        return 0
    sizes = {"tiny": (2, 128, 4, 64, 32), "small": (4, 256, 8, 128, 16), "medium": (6, 384, 6, 256, 8)}

    def sync():
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()

    rows = [_train_row(name, size, sync) for name, size in sizes.items()]
    for row in rows:
        print(
            f"{row['name']:<28} numformer {row['numformer_ms']:8.2f} ms  torch {row['torch_ms']:8.2f} ms  "
            f"ratio {row['ratio']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        )
    return 0


def _train_row(name: str, size: tuple, sync) -> dict:
    """One size: numformer on cuda and its PyTorch twin on cuda, the same weights."""
    import torch

    import numformer as nf
    from numformer.models import GPT, GPTConfig
    from torch_gpt import from_numformer

    layers, d, heads, T, batch = size
    nf.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=T, n_layer=layers, n_head=heads, d_model=d))
    ref = from_numformer(model).cuda()
    model.to("cuda")
    opt = model.configure_optimizers(0.1, 3e-4)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=3e-4, weight_decay=0.1)
    idx = np.random.default_rng(0).integers(0, 256, (batch, T))
    t_idx = torch.from_numpy(idx).cuda()

    def nf_step():
        opt.zero_grad()
        model(idx, idx)[1].backward()
        opt.step()
        sync()

    def torch_step():
        ref_opt.zero_grad()
        ref(t_idx, t_idx)[1].backward()
        ref_opt.step()
        sync()

    return compare(f"gpu_gpt_train_{name}", nf_step, torch_step, repeats=10, warmup=3, calls=3)


if __name__ == "__main__":
    sys.exit(main())

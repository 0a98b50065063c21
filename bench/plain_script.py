"""A plain PyTorch-style script against its PyTorch twin: the speed a user gets by default.

The model is written the way PyTorch code is: ``nn.Embedding`` for tokens and positions, an
``nn.TransformerEncoder`` of pre-LN ``nn.TransformerEncoderLayer(d, heads, 4d, dropout=0.0,
activation="gelu", batch_first=True, norm_first=True)`` called with a boolean causal mask, an
``nn.Linear`` head, ``F.cross_entropy`` and ``optim.AdamW``: a causal language model with none of
the GPT model's own choices. Nothing is tuned: this script calls no numformer or PyTorch set-up
function and sets no environment variable (unlike ``common.py``), so both run with what they do
on import. Same weights, alternating timed training steps (``timing.compare``), ratio of medians.
Writes ``bench/results/plain_script.json`` (with the machine: CPU, NumPy, OpenBLAS kernels,
PyTorch, threads).

Run: ``.venv/bin/python bench/plain_script.py`` (part of ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import numformer as nf
from numformer import nn, optim
from numformer.nn import functional as F
from timing import compare, machine

RESULTS = Path(__file__).parent / "results"
VOCAB = 256
SIZES = {  # name: (layers, d_model, heads, T, batch), as the issue measured them
    "plain_encoder_lm_4x256": (4, 256, 8, 128, 16),
    "plain_encoder_lm_2x128": (2, 128, 4, 64, 32),
}
TARGETS = {"plain_encoder_lm_4x256": 1.0, "plain_encoder_lm_2x128": 1.0}  # the issue (#37): every size <= 1.0


class CausalLM(nn.Module):
    """Token and position embeddings, a pre-LN encoder under a causal mask, a linear head."""

    def __init__(self, layers: int, d: int, heads: int, T: int):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d)
        self.pos = nn.Embedding(T, d)
        layer = nn.TransformerEncoderLayer(
            d, heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(d, VOCAB)

    def forward(self, idx):
        T = idx.shape[1]
        mask = np.triu(np.ones((T, T), dtype=bool), 1)  # True: the pair is masked (PyTorch's convention)
        x = self.tok(idx) + self.pos(np.arange(T))
        return self.head(self.encoder(x, mask=mask))


class TorchCausalLM(torch.nn.Module):
    def __init__(self, layers: int, d: int, heads: int, T: int):
        super().__init__()
        self.tok = torch.nn.Embedding(VOCAB, d)
        self.pos = torch.nn.Embedding(T, d)
        layer = torch.nn.TransformerEncoderLayer(
            d, heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = torch.nn.Linear(d, VOCAB)

    def forward(self, idx):
        T = idx.shape[1]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        x = self.tok(idx) + self.pos(torch.arange(T))
        return self.head(self.encoder(x, mask=mask))


def workload(name: str, repeats: int) -> dict:
    layers, d, heads, T, B = SIZES[name]
    nf.manual_seed(0)
    model = CausalLM(layers, d, heads, T)
    ref = TorchCausalLM(layers, d, heads, T)
    ref.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()})
    opt = optim.AdamW(model.parameters(), lr=1e-4)
    t_opt = torch.optim.AdamW(ref.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, VOCAB, (B, T)), rng.integers(0, VOCAB, (B, T))
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step_nf():
        opt.zero_grad()
        F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1)).backward()
        opt.step()

    def step_torch():
        t_opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(tx).reshape(-1, VOCAB), ty.reshape(-1)).backward()
        t_opt.step()

    row = compare(name, step_nf, step_torch, repeats=repeats, warmup=2, calls=1)
    row["shape"] = f"{layers} layers, d {d}, {heads} heads, T {T}, batch {B}, training step"
    row["target"] = TARGETS[name]
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    info = machine()
    print(
        f"{info['cpu']} (family/model {info['cpu_family_model']}), OpenBLAS kernels {info['openblas_core']}; "
        f"numformer kernel threads {nf.get_num_threads()}, torch threads {torch.get_num_threads()} "
        "(each as it sets itself on import)"
    )
    print(f"{'workload':<26} {'numformer ms':>13} {'torch ms':>10} {'ratio':>6} {'min':>5} {'max':>5} {'target':>7}")
    rows = []
    for name in SIZES:
        r = workload(name, args.repeats)
        r["met"] = r["ratio"] <= r["target"]
        rows.append(r)
        print(
            f"{r['name']:<26} {r['numformer_ms']:>13.1f} {r['torch_ms']:>10.1f} {r['ratio']:>6.2f} "
            f"{r['ratio_min']:>5.2f} {r['ratio_max']:>5.2f} {'<= ' + str(r['target']):>7}"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "plain_script.json"
    out.write_text(json.dumps({"machine": info, "rows": rows, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()

"""numformer's GPT against the same architecture in PyTorch, side by side on this machine.

1. Quality: the demo's recipe (nanoGPT's CPU recipe for character-level Shakespeare: 4 layers,
   4 heads, width 128, context 64, batch 12, 2,000 steps) on the same text: both start from the
   same weights (copied through the state dict), see the same batches in the same order with the
   same hyperparameters (AdamW, warm-up + cosine, clipping), and are evaluated on the same
   validation batches: the validation losses should agree within 0.02 nats. nanoGPT's README
   reports about 1.88 for this recipe (on tiny-shakespeare, in about three minutes on a CPU).
   The losses and wall times go to ``bench/results/shakespeare.json`` (the demo prints them).
2. Speed: training-step time for the demo configuration (ratio of medians, alternating runs)
   and KV-cached greedy generation throughput.

Run: ``.venv/bin/python bench/gpt_vs_torch.py [--steps 2000]``.
"""

from __future__ import annotations

# isort: off
from common import ALLOCATOR_TUNED, BLAS_CORE, PAUSE, THREADS, timed  # first: sets BLAS up before NumPy loads

# isort: on
import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import numformer as nf
from numformer.cli.demo import NANOGPT_VAL_LOSS, _config
from numformer.data import CharTokenizer, TokenData
from numformer.data.corpus import corpus
from numformer.models import GPT
from numformer.nn.utils import clip_grad_norm_
from numformer.optim.lr_scheduler import WarmupCosineLR
from torch_gpt import from_numformer

RESULTS = Path(__file__).parent / "results"
VAL_BATCHES = 200  # 200 x 12 x 64 validation characters, the same batches for both


def lr_factor(step, warmup, total, base, min_lr):
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return (min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))) / base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's 2,000)")
    args = ap.parse_args()
    cfg = _config("runs/bench")
    args.steps = args.steps or cfg.train.max_steps
    text = corpus("shakespeare")
    tok = CharTokenizer.train(text)
    data = TokenData(text, tok)
    nf.manual_seed(0)
    model = GPT(cfg.model_config(tok.vocab_size))
    ref = from_numformer(model)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.lr, betas=(0.9, 0.99))
    sched = WarmupCosineLR(opt, cfg.warmup_steps, args.steps, cfg.min_lr)
    t_opt = ref.configure_optimizers(cfg.weight_decay, cfg.lr, betas=(0.9, 0.99))
    t_sched = torch.optim.lr_scheduler.LambdaLR(
        t_opt, lambda s: lr_factor(s, cfg.warmup_steps, args.steps, cfg.lr, cfg.min_lr)
    )
    rng = np.random.default_rng(0)
    B, T = cfg.batch_size, cfg.model.block_size
    nf_times, t_times, nf_all, t_all = [], [], [], []
    for step in range(args.steps):
        x, y = data.batch(rng, B, T)
        # A timed step comes after a pause and an untimed no-grad forward of its batch that
        # wakes this framework's threads, as ``common.timed`` does (see common.py).
        timing = step >= 5 and step % 40 == 0
        if timing:
            time.sleep(PAUSE)
            with nf.no_grad():
                model(x)
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = model(x, y)[1]
        loss.backward()
        clip_grad_norm_(list(model.parameters()), cfg.train.clip_grad_norm)
        opt.step()
        sched.step()
        t1 = time.perf_counter()
        if timing:
            time.sleep(PAUSE)
            with torch.no_grad():
                ref(torch.from_numpy(x))
        t2 = time.perf_counter()
        t_opt.zero_grad()
        t_loss = ref(torch.from_numpy(x), torch.from_numpy(y))[1]
        t_loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.train.clip_grad_norm)
        t_opt.step()
        t_sched.step()
        t3 = time.perf_counter()
        nf_all.append(t1 - t0)
        t_all.append(t3 - t2)
        if timing:
            nf_times.append(t1 - t0)
            t_times.append(t3 - t2)
    val_rng_a, val_rng_b = np.random.default_rng(99), np.random.default_rng(99)
    with nf.no_grad():
        nf_val = np.mean([model(*data.batch(val_rng_a, B, T, "val"))[1].item() for _ in range(VAL_BATCHES)])
    with torch.no_grad():
        t_val = np.mean(
            [ref(*map(torch.from_numpy, data.batch(val_rng_b, B, T, "val")))[1].item() for _ in range(VAL_BATCHES)]
        )
    print(
        f"threads: {THREADS}; tuned allocator: {ALLOCATOR_TUNED}; OpenBLAS kernels: {BLAS_CORE}; "
        "demo configuration, "
        f"{model.num_parameters():,} parameters, {args.steps} steps of {B} x {T} characters"
    )
    print(
        f"validation loss after {args.steps} steps: numformer {nf_val:.4f}, PyTorch {t_val:.4f}, "
        f"difference {abs(nf_val - t_val):.4f} nats (target < 0.02)"
    )
    print(
        f"training wall time (the sum of every step's time): numformer {sum(nf_all):.0f} s, PyTorch "
        f"{sum(t_all):.0f} s; nanoGPT's README: ~{NANOGPT_VAL_LOSS} in ~3 min"
    )
    RESULTS.mkdir(exist_ok=True)
    if args.steps == cfg.train.max_steps:  # the recipe's run only: the file the demo quotes
        (RESULTS / "shakespeare.json").write_text(
            json.dumps(
                {
                    "steps": args.steps,
                    "numformer_val_loss": float(nf_val),
                    "torch_val_loss": float(t_val),
                    "numformer_s": sum(nf_all),
                    "torch_s": sum(t_all),
                    "val_batches": VAL_BATCHES,
                    "corpus_chars": len(text),
                    "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                },
                indent=1,
            )
        )
    ratio = statistics.median(nf_times) / statistics.median(t_times)
    print(
        f"training step: numformer {1e3 * statistics.median(nf_times):.1f} ms, PyTorch "
        f"{1e3 * statistics.median(t_times):.1f} ms, ratio {ratio:.2f} (target <= 1.3)"
    )
    prompt = data.val[:16].astype(np.int64)[None]
    new = cfg.model.block_size - prompt.shape[1]  # the twin's greedy decoder stops at the context
    for _ in range(2):  # warm-up
        model.generate(prompt.tolist(), 8, temperature=0)
        ref.generate_greedy(torch.from_numpy(prompt), 8)
    nf_g, t_g, out = [], [], {}
    for _ in range(5):
        nf_g.append(timed(lambda: out.update(ours=model.generate(prompt.tolist(), new, temperature=0))))
        t_g.append(timed(lambda: out.update(theirs=ref.generate_greedy(torch.from_numpy(prompt), new))))
    ours, theirs = out["ours"], out["theirs"]
    same = ours[0] == theirs[0].tolist()
    nf_tps, t_tps = new / statistics.median(nf_g), new / statistics.median(t_g)
    print(
        f"KV-cached greedy generation, {new} tokens: numformer {nf_tps:.0f} tok/s, PyTorch "
        f"{t_tps:.0f} tok/s, ratio {nf_tps / t_tps:.2f} (target >= 0.8); same tokens: {same}"
    )


if __name__ == "__main__":
    main()

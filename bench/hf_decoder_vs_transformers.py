"""A SmolLM-135M-sized Llama decoding on the CPU: numformer against transformers, the same
checkpoint, the same threads, in the same process.

The checkpoint is made here by ``transformers`` with random weights (seeded; nothing is
downloaded): SmolLM-135M's shape, 30 layers, hidden 576, 9 query heads over 3 key/value heads,
SwiGLU 1536, vocabulary 49152, tied embeddings, float32. Both load it from the same folder
(``AutoModelForCausalLM.from_pretrained``) and generate greedily from the same random prompts
at batch 1 and batch 8: the prompt pass, then ``--new-tokens`` tokens one at a time through each
framework's own KV cache, no end-of-sequence token, so both produce exactly that many tokens
(checked equal token for token). Tokens per second count the new tokens of every row over the
whole ``generate`` call (prompt pass included); the ratio is numformer's throughput over
transformers' (above 1.0: numformer is faster), from medians of alternating timed blocks
(``timing.compare``, after ``common``'s thread and BLAS set-up: ``NUMFORMER_BENCH_THREADS``
threads for both, default all cores).

On a machine other programs share, wall-clock ratios say more about the neighbours than about
either framework (spinning BLAS and OpenMP threads suffer most); ``--clock cpu`` measures each
call's CPU seconds instead (process time: run it with ``NUMFORMER_BENCH_THREADS=1``, where it
is the work each framework does per token).

Needs transformers (the ``dev`` and ``bench`` extras). Run:
``.venv/bin/python bench/hf_decoder_vs_transformers.py`` (the full run: prompt 32, 128 new
tokens, 7 repeats); ``--smoke`` for a quick check (prompt 16, 8 new tokens, 2 repeats).
Results go to ``bench/results/hf_decoder.json``.
"""

from __future__ import annotations

# isort: off
from common import ALLOCATOR_TUNED, BLAS_CORE, KERNEL_THREADS, THREADS, compare  # first: BLAS set-up before NumPy

# isort: on
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers

import numformer as nf
from numformer.models import AutoModelForCausalLM
from timing import cpu_model

SMOLLM_135M = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=True,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)


def cpu_compare(name: str, nf_fn, torch_fn, repeats: int) -> dict:
    """``timing.compare``'s row with CPU seconds (``time.process_time``) per call, alternating."""
    nf_fn(), torch_fn()
    times = {"nf": [], "torch": []}
    for _ in range(repeats):
        for key, fn in (("nf", nf_fn), ("torch", torch_fn)):
            start = time.process_time()
            fn()
            times[key].append(time.process_time() - start)
    ratios = [a / b for a, b in zip(times["nf"], times["torch"])]
    return {
        "name": name,
        "numformer_ms": 1e3 * statistics.median(times["nf"]),
        "torch_ms": 1e3 * statistics.median(times["torch"]),
        "ratio": statistics.median(times["nf"]) / statistics.median(times["torch"]),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens per row")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--smoke", action="store_true", help="prompt 16, 8 new tokens, 2 repeats")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: process time per call")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "hf_decoder.json"))
    args = parser.parse_args()
    if args.smoke:
        args.prompt, args.new_tokens, args.repeats = 16, 8, 2
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        theirs = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMOLLM_135M)).eval()
        theirs.save_pretrained(folder)
        made = time.perf_counter() - start
        theirs = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
        ours = AutoModelForCausalLM.from_pretrained(folder)
        rows = []
        for batch in (int(b) for b in args.batches.split(",")):
            ids = np.random.default_rng(batch).integers(0, SMOLLM_135M["vocab_size"], (batch, args.prompt))
            t_ids = torch.from_numpy(ids)
            out = {}

            def nf_generate(ids=ids, out=out):
                out["ours"] = ours.generate(ids, max_new_tokens=args.new_tokens).numpy()

            def torch_generate(t_ids=t_ids, out=out):
                with torch.no_grad():
                    out["theirs"] = theirs.generate(
                        t_ids,
                        attention_mask=torch.ones_like(t_ids),
                        max_new_tokens=args.new_tokens,
                        min_new_tokens=args.new_tokens,
                        do_sample=False,
                        pad_token_id=0,
                    ).numpy()

            name = f"smollm135m_generate_batch{batch}"
            if args.clock == "cpu":
                row = cpu_compare(name, nf_generate, torch_generate, args.repeats)
            else:
                row = compare(name, nf_generate, torch_generate, args.repeats, 1, 1)
            same = bool(np.array_equal(out["ours"], out["theirs"]))
            tokens = batch * args.new_tokens
            row.update(
                batch=batch,
                prompt=args.prompt,
                new_tokens=args.new_tokens,
                numformer_tokens_per_s=tokens / (row["numformer_ms"] / 1e3),
                torch_tokens_per_s=tokens / (row["torch_ms"] / 1e3),
                speedup=row["torch_ms"] / row["numformer_ms"],
                same_tokens=same,
                clock=args.clock,
            )
            rows.append(row)
    print(
        f"CPU: {cpu_model()}; threads: torch {torch.get_num_threads()}, numformer kernels {KERNEL_THREADS} "
        f"(bench threads {THREADS}); OpenBLAS kernels {BLAS_CORE}; tuned allocator {ALLOCATOR_TUNED}; "
        f"random SmolLM-135M-sized checkpoint made in {made:.1f} s; prompt {args.prompt}, "
        f"{args.new_tokens} new tokens; {args.clock} clock"
    )
    print(f"{'workload':<30} {'numformer tok/s':>16} {'transformers tok/s':>19} {'speedup':>8} {'same tokens':>12}")
    for r in rows:
        print(
            f"{r['name']:<30} {r['numformer_tokens_per_s']:>16.1f} {r['torch_tokens_per_s']:>19.1f} "
            f"{r['speedup']:>8.2f} {str(r['same_tokens']):>12}"
        )
    info = {
        "cpu": cpu_model(),
        "threads": THREADS,
        "numformer_kernel_threads": KERNEL_THREADS,
        "torch_threads": torch.get_num_threads(),
        "openblas_core": BLAS_CORE,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numformer_threads_at_run": nf.get_num_threads(),
        "smoke": args.smoke,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""What deploying buys: ONNX Runtime on the exported model beside numformer's own forward.

Both run the same weights on the same inputs in one process, with the same number of threads
(``NUMFORMER_BENCH_THREADS``, default all cores: numformer's kernels and BLAS, and ONNX
Runtime's intra-op pool; one inter-op thread). Timed blocks alternate after a pause and a
wake-up call (``timing.compare``); the ratio is numformer's median over ONNX Runtime's (above
1.0: ONNX Runtime is faster by that factor).

- all-MiniLM-L6-v2 (``numformer.onnx.export_model_folder``, what ``numformer embed`` computes:
  ids and mask in, pooled normalised embeddings out) at batch 1 and batch 32, padded
  Shakespeare lines of 3 to ~100 tokens;
- the demo's GPT (nanoGPT's CPU recipe: 4 layers, 4 heads, width 128, context 64, 65
  characters): logits of one sequence over the whole context (batch 1, 64 tokens). Random
  weights of the trained model's shapes (speed does not depend on their values); ``--model``
  times a trained model folder (``runs/demo/model``) instead.

Writes ``bench/results/onnx.json`` with the CPU model, threads and versions.
Run: ``.venv/bin/python bench/onnx_vs_numformer.py [--repeats 15]``; ``--smoke`` runs each
workload a few times only (to check the script, not to quote).
"""

from __future__ import annotations

# isort: off
from common import BLAS_CORE, KERNEL_THREADS, THREADS  # first: sets BLAS up before NumPy loads

# isort: on
import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

import numformer as nf
from bert_vs_st import texts
from numformer.cli.demo import _config
from numformer.models import GPT
from numformer.models.sentence import SentenceEncoder
from numformer.onnx import export, export_model_folder
from numformer.onnx.folders import GPTLogits
from timing import compare, cpu_model

RESULTS = Path(__file__).parent / "results" / "onnx.json"


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def minilm_rows(folder: Path, repeats: int, calls: int) -> list[dict]:
    encoder = SentenceEncoder("all-MiniLM-L6-v2")
    module = encoder.module().eval()
    export_model_folder("all-MiniLM-L6-v2", folder / "minilm.onnx")
    runtime = session(folder / "minilm.onnx")
    data = texts(64)
    rows = []
    for batch in (1, 32):
        ids, mask = encoder.pad(encoder.tokenize(data[:batch]))

        def ours(ids=ids, mask=mask):
            with nf.no_grad():
                return module(ids, mask).array

        def theirs(ids=ids, mask=mask):
            return runtime.run(None, {"input_ids": ids, "attention_mask": mask})[0]

        cosine = float(((ours() * theirs()).sum(1)).min())  # both unit vectors
        row = compare(f"minilm_batch{batch}", ours, theirs, repeats=repeats, warmup=2, calls=calls)
        rows.append(_relabel(row, tokens=int(mask.sum()), shape=list(ids.shape), cosine_min=cosine))
    return rows


def gpt_rows(folder: Path, model_folder, repeats: int, calls: int) -> list[dict]:
    if model_folder:
        model = GPT.load(model_folder)[0]
    else:
        nf.manual_seed(0)
        model = GPT(_config("runs/bench").model_config(65))  # the demo's shapes (65 characters)
    module = GPTLogits(model).eval()
    T = model.config.block_size
    idx = np.random.default_rng(0).integers(0, model.config.vocab_size, (1, T))
    export(
        module,
        (idx,),
        folder / "gpt.onnx",
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}},
    )
    runtime = session(folder / "gpt.onnx")

    def ours():
        with nf.no_grad():
            return module(idx).array

    def theirs():
        return runtime.run(None, {"input_ids": idx})[0]

    largest = float(np.abs(ours() - theirs()).max())
    row = compare(f"gpt_demo_logits_batch1_context{T}", ours, theirs, repeats=repeats, warmup=3, calls=calls)
    return [_relabel(row, shape=list(idx.shape), max_abs_difference=largest)]


def _relabel(row: dict, **extra) -> dict:
    """``timing.compare``'s row with ONNX Runtime in the reference's place."""
    row["onnxruntime_ms"] = row.pop("torch_ms")
    row["onnxruntime_speedup"] = row["ratio"]  # numformer's time / ONNX Runtime's
    return {**row, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="alternating timed blocks per workload (15)")
    parser.add_argument("--model", help="a trained GPT folder (runs/demo/model) instead of random weights")
    parser.add_argument("--smoke", action="store_true", help="3 blocks of 1 call each: checks the script runs")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    repeats, calls = (3, 1) if args.smoke else (args.repeats, 3)
    with tempfile.TemporaryDirectory() as tmp:
        rows = minilm_rows(Path(tmp), repeats, calls) + gpt_rows(Path(tmp), args.model, repeats, calls)
    print(
        f"CPU: {cpu_model()}; threads: numformer kernels {KERNEL_THREADS}, BLAS and ONNX Runtime intra-op "
        f"{THREADS}; OpenBLAS kernels {BLAS_CORE}; onnxruntime {ort.__version__}"
        + ("; SMOKE RUN (few repeats): not for quoting" if args.smoke else "")
    )
    print(f"{'workload':<34} {'numformer ms':>13} {'ORT ms':>9} {'ORT speedup':>12} {'min':>6} {'max':>6}")
    for r in rows:
        print(
            f"{r['name']:<34} {r['numformer_ms']:>13.2f} {r['onnxruntime_ms']:>9.2f} "
            f"{r['onnxruntime_speedup']:>12.2f} {r['ratio_min']:>6.2f} {r['ratio_max']:>6.2f}"
        )
    info = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "threads": THREADS,
        "kernel_threads": KERNEL_THREADS,
        "openblas_core": BLAS_CORE,
        "onnxruntime": ort.__version__,
        "smoke": args.smoke,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()

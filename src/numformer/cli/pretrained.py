"""``numformer embed`` and ``numformer search``: a pretrained sentence encoder from the shell.

``embed`` prints one JSON array per input text, in order (or writes one ``.npy``). ``search``
embeds a corpus file's lines once, caches the embeddings beside the file
(``<corpus>.embeddings.safetensors``, keyed by the SHA-256 of the corpus and of the model's
weights, written atomically), and prints the lines closest to a query by cosine similarity.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


class _Usage(ValueError):
    """A bad combination of flags (reported by the CLI as one line, exit 2)."""


def _encoder(name: str):
    from numformer.models.sentence import SentenceEncoder

    return SentenceEncoder(name)


def _texts(args) -> list[str]:
    from numformer.models.sentence import read_lines, split_lines

    if args.file is not None and args.texts:
        raise _Usage("numformer embed: give texts or --file, not both")
    if args.file is None and not args.texts:
        raise _Usage("numformer embed: give one or more texts, or --file FILE (one text per line)")
    if args.file is None:
        return list(args.texts)
    if args.file == "-":
        return split_lines(sys.stdin.buffer.read(), "stdin")
    return read_lines(args.file)


def embed(args) -> int:
    from numformer.fileio import replace_atomic

    if args.batch_size < 1:
        raise _Usage(f"numformer embed: --batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix != ".npy":
            raise _Usage(f"numformer embed: --out must name a .npy file, got {out}")
        if out.is_dir():
            raise _Usage(f"numformer embed: --out {out} is a folder; name a .npy file")
        if out.exists() and not args.overwrite:
            raise _Usage(f"numformer embed: {out} exists; pass --overwrite to replace it")
        if not out.parent.is_dir():
            raise FileNotFoundError(f"no such folder for --out: {out.parent}")
    from numformer import distributed

    texts = _texts(args)
    world = distributed.world()  # under mpiexec, each rank embeds its slice of the lines
    lo, hi = len(texts) * world.rank // world.size, len(texts) * (world.rank + 1) // world.size
    vectors = _encoder(args.model).encode(
        texts[lo:hi],
        batch_size=args.batch_size,
        normalize=not args.no_normalize,
        show_progress_bar=world.is_main and None,
    )
    vectors = world.gather_rows(vectors)
    if not world.is_main:
        return 0
    if out is not None:
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, vectors, allow_pickle=False)
        replace_atomic(tmp, out)
        print(f"wrote {vectors.shape[0]} embeddings of dim {vectors.shape[1]} (float32) to {out}", file=sys.stderr)
        return 0
    write = sys.stdout.write
    for row in vectors:
        write(json.dumps(row.tolist()) + "\n")
    return 0


def corpus_embeddings(encoder, corpus: Path, lines: list[str], batch_size: int = 64) -> np.ndarray:
    """The corpus lines' normalised embeddings, from the cache beside ``corpus`` when its keys
    (the corpus's and the model's SHA-256) match, else computed and cached (atomically; a
    folder that cannot be written to just means no cache)."""
    from numformer.fileio import sha256_file
    from numformer.interop import load_file, save_file

    cache = corpus.with_name(corpus.name + ".embeddings.safetensors")
    keys = {
        "format": "numformer search cache 1",
        "corpus_sha256": sha256_file(corpus),
        "model_sha256": sha256_file(encoder.folder / "model.safetensors"),
        "tokenizer_sha256": sha256_file(encoder.folder / "tokenizer.json"),
        "max_seq_length": str(encoder.max_seq_length),
        "pooling": encoder.pooling,
    }
    ours = False
    if cache.exists():
        meta = _cache_metadata(cache)
        ours = meta is None or meta.get("format") == keys["format"]  # unreadable: a damaged cache
        meta = meta or {}
        if ours and all(meta.get(k) == v for k, v in keys.items()):
            try:
                vectors = load_file(cache)["embeddings"]
            except (ValueError, OSError, KeyError):
                vectors = None
            if (
                vectors is not None
                and vectors.dtype == np.float32
                and vectors.shape == (len(lines), encoder.dim)
                and np.isfinite(vectors).all()
            ):
                return vectors
    vectors = encoder.encode(lines, batch_size=batch_size, normalize=True)
    if cache.exists() and not ours:
        print(f"note: embeddings not cached: {cache} exists and is not numformer's cache", file=sys.stderr)
        return vectors
    try:
        save_file({"embeddings": vectors}, cache, metadata=keys)
    except OSError as err:
        print(f"note: embeddings not cached ({cache}: {err.strerror or err})", file=sys.stderr)
    return vectors


def _cache_metadata(path: Path) -> dict | None:
    """The cache's metadata, or None for a file that is damaged or not safetensors at all."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        return None


def search(args) -> int:
    from numformer.models.sentence import read_lines

    if args.top_k < 1:
        raise _Usage(f"numformer search: --top-k must be >= 1, got {args.top_k}")
    corpus = Path(args.corpus)
    lines = read_lines(corpus)
    if not any(line.strip() for line in lines):
        raise ValueError(f"{corpus} has no non-empty line to search")
    if not args.query.strip():
        raise _Usage("numformer search: --query is empty")
    encoder = _encoder(args.model)
    query = encoder.encode([args.query], normalize=True)[0]  # a bad query fails before the corpus is embedded
    vectors = corpus_embeddings(encoder, corpus, lines)
    scores = vectors @ query
    candidates = [i for i, line in enumerate(lines) if line.strip()]
    ranked = sorted(candidates, key=lambda i: -scores[i])[: args.top_k]
    if args.json:
        for rank, i in enumerate(ranked, 1):
            print(json.dumps({"rank": rank, "line": i + 1, "score": round(float(scores[i]), 6), "text": lines[i]}))
        return 0
    width = len(str(max(ranked) + 1))
    for rank, i in enumerate(ranked, 1):
        print(f"{rank:>3}  {scores[i]:.4f}  line {i + 1:>{width}}  {lines[i]}")
    return 0


def add_commands(command) -> None:
    """The two subcommands, on the CLI's ``command(name, help)`` factory."""
    emb = command("embed", "sentence embeddings from a pretrained model (one JSON array per text)")
    emb.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed (or use --file)")
    emb.add_argument("--file", help="a UTF-8 file, one text per line (empty lines included); '-' for stdin")
    emb.add_argument("--model", default="all-MiniLM-L6-v2", help="packaged name or model folder (all-MiniLM-L6-v2)")
    emb.add_argument("--out", help="write one float32 .npy (N, dim) instead of JSON lines")
    emb.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    emb.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (32)")
    emb.add_argument("--no-normalize", action="store_true", help="keep the pooled vectors' own length")
    srch = command(
        "search",
        "semantic search: the corpus lines closest to a query (cosine similarity); the corpus's embeddings "
        "are cached beside it as CORPUS.embeddings.safetensors",
    )
    srch.add_argument("--corpus", required=True, help="a UTF-8 text file, one document per line")
    srch.add_argument("--query", required=True, help="the text to search for")
    srch.add_argument("--top-k", type=int, default=5, help="how many lines to print (5)")
    srch.add_argument("--model", default="all-MiniLM-L6-v2", help="packaged name or model folder (all-MiniLM-L6-v2)")
    srch.add_argument("--json", action="store_true", help="one JSON object per result line")

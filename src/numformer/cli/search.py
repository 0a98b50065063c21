"""``numformer search``: the lines of a corpus closest to a query, by cosine similarity of their
sentence embeddings.

The corpus is read once, and its lines are embedded from exactly the bytes that were read; the
embeddings of a regular file are cached beside it (``<corpus>.embeddings.safetensors``), keyed
by the SHA-256 of those bytes and of the model's files and checked by the SHA-256 of the
embeddings themselves, so a file saved while it was being read, or a damaged cache, is never
used for another text. A corpus that is not a regular file (a pipe, ``/dev/stdin``, ``<(cmd)``)
is searched without a cache.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from numformer.cli.common import at_least, not_empty

HELP = (
    "semantic search: the corpus lines closest to a query (cosine similarity); the corpus's embeddings "
    "are cached beside it as CORPUS.embeddings.safetensors"
)
EXAMPLE = "example: numformer search --corpus faq.txt --query 'how do I reset my password' --top-k 3"
CACHE_FORMAT = "numformer search cache 2"


def add_parser(command) -> None:
    parser = command("search", HELP, EXAMPLE)
    parser.add_argument("--corpus", type=not_empty, required=True, help="a UTF-8 text file, one document per line")
    parser.add_argument("--query", type=not_empty, required=True, help="the text to search for")
    parser.add_argument("--top-k", type=at_least(1), default=5, help="how many lines to print (5)")
    parser.add_argument(
        "--model", type=not_empty, default="all-MiniLM-L6-v2", help="packaged name or model folder (all-MiniLM-L6-v2)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per result line")


def check_embedding_memory(count: int, text_bytes: int, dim: int, what: str) -> None:
    """Refuse to embed ``count`` texts of ``text_bytes`` bytes in all when their token lists
    (Python ints, about 40 bytes per byte of text) and their float32 embeddings would not fit
    in this machine's memory.

    Raises:
        ValueError: naming ``what`` and both figures."""
    from numformer.serialization.files import check_memory

    check_memory(40 * text_bytes + 2 * 4 * dim * count, what)


def _digest(vectors) -> str:
    return hashlib.sha256(vectors.tobytes()).hexdigest()


def _through_a_descriptor(corpus: Path) -> bool:
    """Whether ``corpus`` names an open file through ``/dev`` or ``/proc`` (``/dev/stdin``,
    ``/dev/fd/N``): a regular file there may be any file, and its folder is no place for a cache."""
    import os

    return Path(os.path.abspath(corpus)).parts[1:2] in (("dev",), ("proc",))


def corpus_embeddings(encoder, corpus: Path, data: bytes, lines: list[str], batch_size: int = 64):
    """The corpus lines' normalised embeddings, from the cache beside a regular-file ``corpus``
    when its keys (the SHA-256 of ``data``, the bytes the lines came from, and of the model's
    files) match and its embeddings pass their checksum, else computed and cached (atomically;
    a folder that cannot be written to just means no cache).

    Shape: -> float32 ``(len(lines), dim)``."""
    import numpy as np

    from numformer.serialization.files import is_regular_file, sha256_file
    from numformer.serialization.safetensors import load_arrays, read_metadata, save_arrays

    if not is_regular_file(corpus) or _through_a_descriptor(corpus):  # no cache beside a pipe or in /dev
        return encoder.encode(lines, batch_size=batch_size, normalize=True)
    cache = corpus.with_name(corpus.name + ".embeddings.safetensors")
    keys = {
        "format": CACHE_FORMAT,
        "corpus_sha256": hashlib.sha256(data).hexdigest(),
        "model_sha256": sha256_file(encoder.folder / "model.safetensors"),
        "tokenizer_sha256": sha256_file(encoder.folder / "tokenizer.json"),
        "max_seq_length": str(encoder.max_seq_length),
        "pooling": encoder.pooling,
    }
    ours = not cache.is_symlink() and not cache.exists()  # a link may point anywhere: never written through
    if cache.exists() and not cache.is_symlink():
        meta = read_metadata(cache)
        ours = is_regular_file(cache) and (
            meta is None or str(meta.get("format", "")).startswith("numformer search cache")
        )
        if ours and meta is not None and all(meta.get(k) == v for k, v in keys.items()):
            try:
                vectors = load_arrays(cache)["embeddings"]
            except (ValueError, OSError, KeyError):
                vectors = None
            expected = (np.float32, (len(lines), encoder.dim), meta.get("embeddings_sha256"))
            if vectors is not None and (vectors.dtype, vectors.shape, _digest(vectors)) == expected:
                return vectors
    vectors = encoder.encode(lines, batch_size=batch_size, normalize=True)
    if not ours:
        what = "is a symbolic link" if cache.is_symlink() else "exists and is not numformer's cache"
        print(f"note: embeddings not cached: {cache} {what}", file=sys.stderr)
        return vectors
    try:
        save_arrays({"embeddings": vectors}, cache, metadata={**keys, "embeddings_sha256": _digest(vectors)})
    except OSError as err:
        print(f"note: embeddings not cached ({cache}: {err.strerror or err})", file=sys.stderr)
    return vectors


def run(args) -> int:
    from numformer.models.sentence import SentenceEncoder, split_lines
    from numformer.serialization.files import read_bytes

    corpus = Path(args.corpus)
    data = read_bytes(corpus)  # once: the lines and the cache's key come from these bytes
    lines = split_lines(data, corpus)
    if not any(line.strip() for line in lines):
        raise ValueError(f"{corpus} has no non-empty line to search")
    encoder = SentenceEncoder(args.model)
    check_embedding_memory(len(lines), len(data), encoder.dim, f"the embeddings of {corpus}'s {len(lines):,} lines")
    query = encoder.encode([args.query], normalize=True)[0]  # a bad query fails before the corpus is embedded
    vectors = corpus_embeddings(encoder, corpus, data, lines)
    scores = vectors @ query
    candidates = [i for i, line in enumerate(lines) if line.strip()]
    ranked = sorted(candidates, key=lambda i: -scores[i])[: args.top_k]
    width = len(str(max(ranked) + 1))
    for rank, i in enumerate(ranked, 1):
        if args.json:
            print(json.dumps({"rank": rank, "line": i + 1, "score": round(float(scores[i]), 6), "text": lines[i]}))
        else:
            print(f"{rank:>3}  {scores[i]:.4f}  line {i + 1:>{width}}  {lines[i]}")
    return 0

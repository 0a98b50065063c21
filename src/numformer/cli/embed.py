"""``numformer embed``: sentence embeddings from a pretrained encoder, one JSON array per text
(or one ``.npy``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from numformer.cli.common import UsageError, at_least, check_new_file, not_empty

HELP = "sentence embeddings from a pretrained model (one JSON array per text)"
EXAMPLE = (
    "examples:\n  numformer embed 'A man plays a guitar.' 'Someone plays music.'\n"
    "  numformer embed --file notes.txt --out notes.npy"
)


def add_parser(command) -> None:
    parser = command("embed", HELP, EXAMPLE)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed (or use --file)")
    parser.add_argument(
        "--file", type=not_empty, help="a UTF-8 file, one text per line (empty lines included); '-' for stdin"
    )
    parser.add_argument(
        "--model", type=not_empty, default="all-MiniLM-L6-v2", help="packaged name or model folder (all-MiniLM-L6-v2)"
    )
    parser.add_argument("--out", type=not_empty, help="write one float32 .npy (N, dim) instead of JSON lines")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--batch-size", type=at_least(1), default=32, help="texts per forward pass (32)")
    parser.add_argument("--no-normalize", action="store_true", help="keep the pooled vectors' own length")


def _texts(args) -> list[str]:
    from numformer.models.sentence import read_lines

    if args.file is not None and args.texts:
        raise UsageError("numformer embed: give texts or --file, not both")
    if args.file is None and not args.texts:
        raise UsageError("numformer embed: give one or more texts, or --file FILE (one text per line)")
    if args.file is None:
        return list(args.texts)
    return read_lines("/dev/stdin" if args.file == "-" else args.file)


def run(args) -> int:
    import numpy as np

    from numformer import distributed
    from numformer.cli.search import check_embedding_memory
    from numformer.models.sentence import SentenceEncoder
    from numformer.serialization.files import atomic_write

    out = Path(args.out) if args.out else None
    if out is not None:
        check_new_file(out, ".npy", args.overwrite, "numformer embed", "--out")
    texts = _texts(args)
    world = distributed.world()  # under mpiexec, each rank embeds its slice of the lines
    lo, hi = len(texts) * world.rank // world.size, len(texts) * (world.rank + 1) // world.size
    encoder = SentenceEncoder(args.model)
    size = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    check_embedding_memory(len(texts), size, encoder.dim, f"the embeddings of {len(texts):,} texts")
    vectors = encoder.encode(
        texts[lo:hi],
        batch_size=args.batch_size,
        normalize=not args.no_normalize,
        show_progress_bar=world.is_main and None,
    )
    vectors = world.gather_rows(vectors)
    if not world.is_main:
        return 0
    if out is not None:

        def write(tmp):
            with open(tmp, "wb") as f:
                np.save(f, vectors, allow_pickle=False)

        atomic_write(out, write)
        print(f"wrote {vectors.shape[0]} embeddings of dim {vectors.shape[1]} (float32) to {out}", file=sys.stderr)
        return 0
    for row in vectors:
        sys.stdout.write(json.dumps(row.tolist()) + "\n")
    return 0

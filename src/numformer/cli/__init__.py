"""The ``numformer`` command line. ``numformer demo`` is the main job for now."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numformer",
        description="Transformers from scratch in NumPy.",
        epilog="example: numformer demo --seed 42",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="walk through the seed's sections 2-5 with numformer's modules",
        description="Self-attention, multi-head attention, positional encoding and a 2-layer "
        "encoder, each computed with numformer and printed as tables.",
        epilog="example: numformer demo --seed 42",
    )
    demo.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from numformer.cli.demo import run

        run(seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

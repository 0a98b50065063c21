"""``numformer sections``: the seed's sections 2-5, an alias of ``numformer tour 2 3 4 5``."""

from __future__ import annotations

from pathlib import Path

from numformer.cli.common import at_least, check_folder, not_empty

HELP = "the seed's sections 2-5: an alias of 'numformer tour 2 3 4 5'"
EXAMPLE = "example: numformer sections --seed 42   (the same as: numformer tour 2 3 4 5 --seed 42)"


def add_parser(command) -> None:
    parser = command("sections", HELP, EXAMPLE)
    parser.add_argument("--seed", type=at_least(0), default=42, help="seed of every random draw (42)")
    parser.add_argument("--out", type=not_empty, default="runs/tour", help="folder for the figures (runs/tour)")


def run(args) -> int:
    from numformer.tour import run as tour

    check_folder(Path(args.out), f"numformer sections: --out {args.out}")
    tour([2, 3, 4, 5], out=args.out, seed=args.seed)
    return 0

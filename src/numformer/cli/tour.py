"""``numformer tour``: the seed's sections 1-8 reproduced."""

from __future__ import annotations

from pathlib import Path

from numformer.cli.common import at_least, check_folder, not_empty

HELP = "the seed's sections 1-8 reproduced with numformer: tables, figures, HTML"
EXAMPLE = "examples:\n  numformer tour\n  numformer tour 4 7 --out runs/tour\n  numformer tour --html"


def add_parser(command) -> None:
    parser = command("tour", HELP, EXAMPLE)
    parser.add_argument("sections", nargs="*", type=int, help="section numbers (default: all)")
    parser.add_argument("--out", type=not_empty, default="runs/tour", help="folder for figures and report (runs/tour)")
    parser.add_argument("--html", action="store_true", help="also write one interactive tour.html")
    parser.add_argument("--fast", action="store_true", help="smaller sizes: seconds per section")
    parser.add_argument("--seed", type=at_least(0), default=42, help="seed of every random draw (42)")


def run(args) -> int:
    from numformer.tour import run as tour

    check_folder(Path(args.out), f"numformer tour: --out {args.out}")
    tour(args.sections, out=args.out, html=args.html, fast=args.fast, seed=args.seed)
    return 0

"""``numformer tour`` (the seed's sections 1-8 reproduced) and ``numformer sections`` (its
alias for sections 2-5)."""

from __future__ import annotations

HELP = "the seed's sections 1-8 reproduced with numformer: tables, figures, HTML"
EXAMPLE = "examples:\n  numformer tour\n  numformer tour 4 7 --out runs/tour\n  numformer tour --html"
SECTIONS_HELP = "the seed's sections 2-5: an alias of 'numformer tour 2 3 4 5'"
SECTIONS_EXAMPLE = "example: numformer sections --seed 42   (the same as: numformer tour 2 3 4 5 --seed 42)"


def add_parser(command) -> None:
    parser = command("tour", HELP, EXAMPLE)
    parser.add_argument("sections", nargs="*", type=int, help="section numbers (default: all)")
    parser.add_argument("--out", default="runs/tour", help="folder for figures and report (runs/tour)")
    parser.add_argument("--html", action="store_true", help="also write one interactive tour.html")
    parser.add_argument("--fast", action="store_true", help="smaller sizes: seconds per section")
    parser.add_argument("--seed", type=int, default=42, help="seed of every random draw (42)")


def add_sections_parser(command) -> None:
    parser = command("sections", SECTIONS_HELP, SECTIONS_EXAMPLE)
    parser.add_argument("--seed", type=int, default=42, help="seed of every random draw (42)")
    parser.add_argument("--out", default="runs/tour", help="folder for the figures (runs/tour)")


def _check(args, command: str) -> None:
    """--seed and --out checked before any section runs."""
    from pathlib import Path

    from numformer.cli.common import UsageError

    if args.seed < 0:
        raise UsageError(f"{command}: --seed must be >= 0, got {args.seed}")
    out = Path(args.out)
    if not args.out.strip():
        raise UsageError(f"{command}: --out is empty; name the folder for the figures")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{command}: --out {out} is a file; name a folder for the figures")
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UsageError(f"{command}: --out {out} lies under {blocked}, which is a file, not a folder")


def run(args) -> int:
    from numformer.tour import run as tour

    _check(args, "numformer tour")
    tour(args.sections, out=args.out, html=args.html, fast=args.fast, seed=args.seed)
    return 0


def run_sections(args) -> int:
    from numformer.tour import run as tour

    _check(args, "numformer sections")
    tour([2, 3, 4, 5], out=args.out, seed=args.seed)
    return 0

"""``numformer info``: a trained model's configuration, size and training history."""

from __future__ import annotations

HELP = "show a trained model's configuration, size and training history"
EXAMPLE = "example: numformer info runs/small"


def add_parser(command) -> None:
    parser = command("info", HELP, EXAMPLE)
    parser.add_argument("path", help="model folder or run folder")


def run(args) -> int:
    from numformer.train import lm

    lm.info(args.path)
    return 0

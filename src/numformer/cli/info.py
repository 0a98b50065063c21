"""``numformer info``: a model's architecture and size: a model numformer trained (with its
training history) or a Hugging Face folder (from its config and weights' headers, nothing
loaded)."""

from __future__ import annotations

from numformer.cli.common import NUMFORMER, model_folder

HELP = "show a model's architecture and size (and a numformer model's training history)"
EXAMPLE = "examples:\n  numformer info runs/small\n  numformer info SmolLM-135M"


def add_parser(command) -> None:
    parser = command("info", HELP, EXAMPLE)
    parser.add_argument("path", help="a model or run folder, or a Hugging Face model folder")


def run(args) -> int:
    kind, folder = model_folder(args.path)
    if kind == NUMFORMER:
        from numformer.train import lm

        lm.info(args.path)
    else:
        from numformer.models.auto import describe

        print(describe(folder))
    return 0

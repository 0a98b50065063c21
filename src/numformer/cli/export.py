"""``numformer export onnx MODEL_FOLDER OUT.onnx``: a model folder as one ONNX file
(``numformer.onnx.export_model_folder``). An application's trained models export with
``numformer app NAME export``.
"""

from __future__ import annotations

from pathlib import Path

from numformer.cli.common import UsageError, check_new_file

HELP = "export a model folder to ONNX (the demo's GPT, or a sentence-transformers model)"
EXAMPLE = (
    "examples:\n  numformer export onnx runs/demo/model gpt.onnx\n"
    "  numformer export onnx all-MiniLM-L6-v2 minilm.onnx\n"
    "an application's trained models: numformer app NAME export"
)


def add_parser(command) -> None:
    parser = command("export", HELP, EXAMPLE)
    parser.add_argument("format", choices=["onnx"], help="the file format: onnx")
    parser.add_argument(
        "model",
        metavar="MODEL_FOLDER",
        help="a GPT folder (numformer demo's runs/demo/model), or a sentence-transformers folder or "
        "packaged name (all-MiniLM-L6-v2)",
    )
    parser.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write (its folder must exist)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT.onnx")
    parser.add_argument("--opset", type=int, help="the ONNX opset: 17 (the default) or later; 20+ uses ONNX's Gelu")


def require_onnx(command: str) -> None:
    """Stop with one line naming the pip command when the ``onnx`` package is missing, before
    any model is read.

    Raises:
        UsageError: ``onnx`` is not installed."""
    from numformer.onnx.exporter import import_onnx

    try:
        import_onnx()
    except ImportError as err:
        raise UsageError(f"{command}: {err}") from None


def run(args) -> int:
    from numformer.models.bert import PACKAGED
    from numformer.onnx import export_model_folder
    from numformer.viz.tables import say

    command = "numformer export onnx"
    for name, value in (("MODEL_FOLDER", args.model), ("OUT.onnx", args.out)):
        if not value.strip():  # Path("") is the current folder: never read or named unasked
            raise UsageError(f"{command}: {name} is empty")
    out = Path(args.out)
    if args.model not in PACKAGED and not Path(args.model).is_dir():
        what = "is a file, not a model folder" if Path(args.model).exists() else "does not exist"
        raise UsageError(f"{command}: {args.model} {what} (a GPT folder, a sentence-transformers folder or name)")
    check_new_file(out, ".onnx", args.overwrite, command, "OUT")
    require_onnx(command)
    say(export_model_folder(args.model, out, opset_version=args.opset).describe())
    return 0

"""What the commands share: the one-line usage error, the parser that raises it, and the
``--device`` check."""

from __future__ import annotations

import argparse
from pathlib import Path


class UsageError(Exception):
    """A mistake on the command line: reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, with its errors raised as ``UsageError`` (one line, exit 2)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def true_or_false(text: str) -> bool:
    """A flag's ``true``/``false`` (also 1/0, yes/no, on/off)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_device(parser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu or cuda (an NVIDIA GPU through CuPy: numformer[gpu])")


def device(name: str):
    """The --device flag checked (a name, and for cuda a usable GPU), or a one-line error; None
    for the CPU."""
    from numformer import backend

    try:
        chosen = backend.Device(name)
        if chosen.type != "cpu":
            backend.device_module(chosen)
    except (ValueError, TypeError, RuntimeError) as err:
        raise UsageError(f"--device: {err}") from None
    return None if chosen.type == "cpu" else str(chosen)


NUMFORMER, TRANSFORMERS = "numformer", "transformers"


def model_folder(path) -> tuple[str, Path]:
    """What ``path`` holds, for the commands that take either kind of model: ``("numformer",
    folder)`` for a model folder ``GPT.save`` wrote (its ``config.json`` has a ``"model"``
    field), or a run folder with one in ``model/``; ``("transformers", path)`` for a folder in
    Hugging Face's layout (its ``config.json`` has a ``"model_type"``).

    Raises:
        FileNotFoundError: nothing at ``path``, or an incomplete numformer folder.
        UsageError: a file, or a ``config.json`` of neither kind.
        ValueError: a ``config.json`` that is not a JSON object."""
    from numformer.serialization.folders import CONFIG, read_config
    from numformer.train import lm

    if not str(path).strip():  # Path("") is the current folder: never searched for a model unasked
        raise UsageError("the model folder is empty: name a model folder, or a run folder")
    path = Path(path)
    if path.exists() and not path.is_dir():  # info takes it as a positional, generate as --model
        raise UsageError(f"{path} is a file: name a model folder, or a run folder (numformer train --out DIR)")
    if (path / CONFIG).is_file():
        config = read_config(path)
        if "model_type" in config:
            return TRANSFORMERS, path
        if "model" not in config and "trained_with" in config:  # numformer app NAME train's model folder
            raise UsageError(f"{path} holds an application's model, not a GPT: use 'numformer app NAME ...'")
        if "model" not in config:
            raise UsageError(
                f"{path / CONFIG} is neither a numformer model's (a 'model' field) nor a Hugging Face "
                "model's (a 'model_type' field)"
            )
    return NUMFORMER, lm.resolve_model_folder(path)


def tqdm_write(text: str) -> None:
    """Print a line without breaking a progress bar. A terminal that is gone (EIO: the window
    closed, the SSH session dropped; SIGHUP follows) drops the line, so a train that SIGHUP
    asks to save is not ended by its own output first."""
    import errno

    from tqdm.auto import tqdm

    try:
        tqdm.write(text)
    except OSError as err:
        if err.errno != errno.EIO:
            raise

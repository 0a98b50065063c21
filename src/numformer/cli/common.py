"""What the commands share: the one-line usage error, the parser that raises it, the flags'
checks (argparse ``type=`` validators and the checks of the files and folders a command writes),
and the ``--device`` check."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


class UsageError(Exception):
    """A mistake on the command line: reported in one line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse's parser, with its errors raised as ``UsageError`` (one line, exit 2)."""

    def error(self, message):
        # a validator's "argument --flag: must be ..." reads "--flag must be ..."
        message = re.sub(r"^argument (\S+): (?=must |is )", r"\1 ", message)
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def at_least(low: int):
    """An argparse ``type=``: an integer ``>= low``."""

    def integer(text: str) -> int:
        value = int(text)  # not an integer: argparse's "invalid int value" line
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    integer.__name__ = "int"
    return integer


def not_empty(text: str) -> str:
    """An argparse ``type=``: a text that is not empty or blank (``Path("")`` would be the current
    folder: never read or written unasked)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"is empty, got {text!r}")
    return text


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


def given(args, names: str) -> list[str]:
    """The flags among ``names`` (space-separated dests) that the command line gave; a value that
    compares equal to False (0, '') is given all the same."""
    values = {name: getattr(args, name) for name in names.split()}
    return ["--" + name.replace("_", "-") for name, value in values.items() if value is not None and value is not False]


def check_folder(path: Path, named: str) -> None:
    """``path`` can be (or become) a folder: not a file, not under one. ``named`` begins the
    error line (``numformer tour: --out runs/x``).

    Raises:
        UsageError: naming ``path`` and the file in the way."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{named} is a file, not a folder")
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UsageError(f"{named} lies under {blocked}, which is a file, not a folder")


def check_new_file(path: Path, suffix: str, overwrite: bool, command: str, flag: str) -> None:
    """``path`` can take the ``suffix`` file ``command`` writes (the one ``flag`` names): not a
    folder, not another file unless ``overwrite``, in a folder that exists.

    Raises:
        UsageError: naming ``flag``, what it needs and what it got."""
    if path.is_dir():
        raise UsageError(f"{command}: {flag} {path} is a folder; name the {suffix} file to write")
    if path.suffix != suffix:
        raise UsageError(f"{command}: {flag} must name a {suffix} file, got {path}")
    if path.exists() and not overwrite:
        raise UsageError(f"{command}: {path} exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise UsageError(f"{command}: {flag}: no such folder for {path.name}: {path.parent}")


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

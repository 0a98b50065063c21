"""What the commands share: the one-line usage error, the parser that raises it, and the
``--device`` check."""

from __future__ import annotations

import argparse


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

"""The ``numformer`` command line: one module per command, each with its ``add_parser`` and its
``run``, and the dispatch table below.

Every error a user can cause (a bad flag, a missing file, a config of the wrong type, an empty
corpus, a prompt the vocabulary cannot encode) ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from numformer.cli.common import Parser, UsageError

# the commands, in the help's order; each is the module of its name (- for _) with its add_parser and run
COMMANDS = "demo sections train generate lr-find info tour blas embed search export app".split()


def _module(command: str):
    return importlib.import_module(f"numformer.cli.{command.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="numformer",
        description="Transformers from scratch in NumPy.",
        epilog="example: numformer demo",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name, help_text, example):
        return sub.add_parser(
            name, help=help_text, description=help_text, epilog=example, formatter_class=argparse.RawTextHelpFormatter
        )

    for name in COMMANDS:
        _module(name).add_parser(command)
    return parser


def _parse(argv):
    """Parse the command line. ``numformer app`` parses its verb, its inputs and its options in
    any order (``app vit --out DIR predict test:0``), and everything after ``--`` is an input,
    so an input may begin with ``-``."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["app"]:
        app = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["app"]
        args = app.parse_intermixed_args(argv[1:])
        args.command = "app"
        return args
    return parser.parse_args(argv)


def _user_errors() -> tuple:
    """Exceptions that mean the user asked for something impossible (not a numformer bug)."""
    from numformer.train.checkpoint import CheckpointError

    return (UsageError, ValueError, FileNotFoundError, CheckpointError)


def _report(line: str) -> None:
    """One error line on stderr. Under MPI, ranks other than 0 wait a moment first: a mistake
    every rank makes (a bad flag) is then said once, by rank 0, whose abort ends the others."""
    from numformer import distributed

    world = distributed.world()
    if world.size > 1 and not world.is_main:
        import time

        time.sleep(2.0)
        line = f"{line} (rank {world.rank})"
    print(line, file=sys.stderr)


def _one_line(err) -> str:
    """An error's message on one line (a list of problems joined with '; ', a heading that ends
    in ':' followed by its first problem with a space)."""
    line = ""
    for part in filter(None, (p.strip() for p in str(err).splitlines())):
        line += part if not line else (" " if line.endswith(":") else "; ") + part
    return line


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning (a model folder without its manifest, ...) as one line on stderr."""
    print(f"warning: {_one_line(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    # Importing numformer already runs its kernels on every core and tunes the allocator
    # (NUMFORMER_NUM_THREADS and NUMFORMER_TUNE_ALLOCATOR change that). NumPy's floating-point
    # warnings stay quiet: a run that goes non-finite is caught by the trainer and reported in
    # one line, not as a page of RuntimeWarnings.
    import warnings

    import numpy as np

    from numformer import distributed

    np.seterr(all="ignore")
    warnings.showwarning = _warning_line
    try:
        code = _main(argv)
    except BaseException:  # a bug (a traceback): under MPI the other ranks must not wait for this one
        if distributed.world().size > 1:
            import traceback

            traceback.print_exc()
            distributed.world().abort(1)
        raise
    if code not in (0, None) and distributed.world().size > 1:
        distributed.world().abort(code)  # the other ranks may wait in a collective for this one
    return code


def _main(argv) -> int:
    try:
        args = _parse(argv)
        return _module(args.command).run(args)
    except BrokenPipeError:  # the reader went away (numformer generate ... | head): end quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except _user_errors() as err:
        _report(f"error: {_one_line(err)}")
    except OSError as err:  # a path the user gave: missing, a folder, not writable, ...
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
    except ImportError as err:
        print(
            f"error: {err}; install the extras with: pip install 'numformer[demo]' "
            "(or the one the command needs: pretrained, apps, distributed, gpu)",
            file=sys.stderr,
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError as err:  # the inputs or the sizes asked for: never a traceback
        detail = f" ({err})" if str(err) else ""
        print(f"error: this machine ran out of memory{detail}; give smaller inputs or sizes", file=sys.stderr)
    return 2

"""The ``numformer`` command line.

Every error a user can cause (a bad flag, a missing file, a config of the wrong type, an empty
corpus, a prompt the vocabulary cannot encode) ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

EXAMPLES = {
    "demo": "example: numformer demo --seconds 60",
    "sections": "example: numformer sections --seed 42   (the same as: numformer tour 2 3 4 5 --seed 42)",
    "train": "examples:\n  numformer train --max-steps 500 --out runs/small\n"
    "  numformer train --config my.toml --data notes.txt --n-layer 2\n"
    "  numformer train --out runs/small --resume",
    "generate": "example: numformer generate --model runs/small --prompt 'The ' "
    "--max-new-tokens 200 --temperature 0.8 --top-k 20 --seed 1",
    "lr-find": "example: numformer lr-find --config my.toml --out runs/lr",
    "info": "example: numformer info runs/small",
    "blas": "example: numformer blas\n  then, in your shell profile: export OPENBLAS_CORETYPE=<the core it names>",
    "tour": "examples:\n  numformer tour\n  numformer tour 4 7 --out runs/tour\n  numformer tour --html",
    "embed": "examples:\n  numformer embed 'A man plays a guitar.' 'Someone plays music.'\n"
    "  numformer embed --file notes.txt --out notes.npy",
    "search": "example: numformer search --corpus faq.txt --query 'how do I reset my password' --top-k 3",
    "app": "examples:\n  numformer app list\n  numformer app translate-numbers train --fast\n"
    "  numformer app translate-numbers eval --json\n  numformer app translate-numbers predict 'four hundred and two'\n"
    "predict inputs: translate-*, classify: TEXT ...; vit: test:K | IMAGE.npy; forecast: SERIES [FILE];\n"
    "  anomaly: FILE; sasrec: --user ID",
}


class UsageError(Exception):
    """A mistake on the command line: reported in one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_run_flags(parser) -> None:
    from numformer.train.lm import ALIASES, RunConfig

    parser.add_argument("--config", help="TOML file with any of the settings below")
    groups = {
        None: parser.add_argument_group("run settings (override the config file)"),
        "model": parser.add_argument_group("model settings (GPTConfig)"),
        "train": parser.add_argument_group("trainer settings (TrainConfig)"),
    }
    aliases = {target: alias for alias, target in ALIASES.items()}
    for name, (section, kind, default) in RunConfig.settings().items():
        flags = ["--" + aliases.get(name, name).replace("_", "-")]  # one flag per setting
        groups[section].add_argument(
            *flags, dest=name, type=_bool if kind is bool else kind, default=None, help=f"default: {default!r}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="numformer",
        description="Transformers from scratch in NumPy.",
        epilog="example: numformer demo",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name, help_text):
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXAMPLES[name],
            formatter_class=argparse.RawTextHelpFormatter,
        )

    demo = command("demo", "the main job: train a character-level GPT on the default corpus")
    demo.add_argument("--seconds", type=float, default=180.0, help="training time budget (180)")
    demo.add_argument("--out", default="runs/demo", help="output folder (runs/demo)")
    sections = command("sections", "the seed's sections 2-5: an alias of 'numformer tour 2 3 4 5'")
    sections.add_argument("--seed", type=int, default=42, help="seed of every random draw (42)")
    sections.add_argument("--out", default="runs/tour", help="folder for the figures (runs/tour)")
    train = command("train", "train a GPT language model on a text file or folder")
    _add_run_flags(train)
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint (the run's settings)")
    train.add_argument(
        "--resume-from", metavar="STEP|PATH", help="continue from a chosen checkpoint: its step, or its folder"
    )
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out (deletes it)")
    train.add_argument("--device", default="cpu", help="cpu or cuda (an NVIDIA GPU through CuPy: numformer[gpu])")
    gen = command("generate", "generate text from a trained model, streaming it as it comes")
    gen.add_argument("--model", required=True, help="model folder or run folder")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=200)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--device", default="cpu", help="cpu or cuda (an NVIDIA GPU through CuPy: numformer[gpu])")
    lrf = command("lr-find", "sweep the learning rate and suggest one (plot in --out)")
    _add_run_flags(lrf)
    lrf.add_argument("--steps", type=int, default=100, help="sweep length (100)")
    inf = command("info", "show a trained model's configuration, size and training history")
    inf.add_argument("path", help="model folder or run folder")
    tour = command("tour", "the seed's sections 1-8 reproduced with numformer: tables, figures, HTML")
    tour.add_argument("sections", nargs="*", type=int, help="section numbers (default: all)")
    tour.add_argument("--out", default="runs/tour", help="folder for figures and report (runs/tour)")
    tour.add_argument("--html", action="store_true", help="also write one interactive tour.html")
    tour.add_argument("--fast", action="store_true", help="smaller sizes: seconds per section")
    tour.add_argument("--seed", type=int, default=42, help="seed of every random draw (42)")
    blas = command("blas", "which OpenBLAS kernels NumPy runs, and the fastest on this CPU (measured)")
    blas.add_argument(
        "--best", action="store_true", help="print only the core to set OPENBLAS_CORETYPE to (empty: none known)"
    )
    from numformer.cli.apps import add_command
    from numformer.cli.pretrained import add_commands

    add_commands(command)
    add_command(command)
    return parser


def _blas(best_only: bool) -> None:
    from numformer.blas import blas_core, fastest_blas_core
    from numformer.viz.tables import say, table

    if best_only:
        print(fastest_blas_core()[1] or "")
        return
    current = blas_core()
    if current is None:
        say("NumPy's BLAS is not an OpenBLAS numformer can ask (or this is not Linux): nothing to choose.")
        return
    forced = os.environ.get("OPENBLAS_CORETYPE")
    say(f"NumPy runs OpenBLAS's {current} kernels" + (f" (OPENBLAS_CORETYPE={forced})" if forced else ""))
    default, best, rates = fastest_blas_core()
    if not rates:
        say("the measurement failed: no kernel family could be timed")
        return
    rows = [
        [
            core,
            f"{rate:.1f}",
            " ".join(w for w, on in (("OpenBLAS's pick", core == default), ("fastest", core == best)) if on),
        ]
        for core, rate in sorted(rates.items(), key=lambda kv: -kv[1])
    ]
    table("transformer-shaped GEMMs, 1 thread", ["kernels", "GFLOP/s", ""], rows)
    if best == current:
        say(f"{current} is the fastest here: nothing to change.")
    else:
        base = current if current in rates else default  # a forced core the probe did not time
        gain = rates[best] / rates[base] - 1
        say(
            f"{best} is {100 * gain:.0f}% faster here than {base}; set it before Python starts (OpenBLAS picks its "
            f"kernels once, when NumPy loads):\n  export OPENBLAS_CORETYPE={best}"
        )


def _given_settings(args) -> dict:
    """The settings the user gave: the TOML file's, then the flags' over them."""
    from numformer.train.lm import RunConfig, read_toml

    given = read_toml(args.config) if args.config else {}
    flags = {name: getattr(args, name) for name in RunConfig.settings() if getattr(args, name, None) is not None}
    if "out_dir" in flags:
        given.pop("out", None)
    return {**given, **flags}


def _run_config(args):
    from numformer.train.lm import RunConfig

    config = RunConfig.from_toml(args.config) if args.config else RunConfig()
    overrides = {name: getattr(args, name) for name in RunConfig.settings() if getattr(args, name, None) is not None}
    return config.updated(overrides, source="command line")


def _train(args) -> int:
    from pathlib import Path

    from numformer.train import lm

    resume = args.resume or args.resume_from is not None
    if resume and args.overwrite:
        raise UsageError("numformer train: --overwrite starts over; it cannot go with --resume or --resume-from")
    if resume:
        given = _given_settings(args)
        out = Path(given.get("out_dir", given.get("out", lm.RunConfig().train.out_dir)))
        config = lm.config_for_resume(out, given)
    else:
        config = _run_config(args)
    device = _device(args.device)
    _, _, result = lm.train(
        config,
        resume=args.resume,
        resume_from=args.resume_from,
        overwrite=args.overwrite,
        write=_tqdm_write,
        device=device,
    )
    if result.status == "interrupted":
        print(f"interrupted at step {result.step}: checkpoint saved; continue with --resume", file=sys.stderr)
        return 130
    if result.status in ("diverged", "fatal"):
        print(f"error: {result.reason}", file=sys.stderr)
        return 1
    return 0


def _device(name: str):
    """The --device flag checked (a name, and for cuda a usable GPU), or a one-line error."""
    from numformer import backend

    try:
        device = backend.Device(name)
        if device.type != "cpu":
            backend.device_module(device)
    except (ValueError, TypeError, RuntimeError) as err:
        raise UsageError(f"--device: {err}") from None
    return None if device.type == "cpu" else str(device)


def _dispatch(args) -> int:
    if args.command == "sections":
        from numformer.tour import run

        run([2, 3, 4, 5], out=args.out, seed=args.seed)
    elif args.command == "demo":
        from numformer.cli.demo import run

        run(seconds=args.seconds, out=args.out)
    elif args.command == "train":
        return _train(args)
    elif args.command == "lr-find":
        from numformer.train import lm

        lm.find_lr(_run_config(args), num_steps=args.steps)
    elif args.command == "tour":
        from numformer.tour import run

        run(args.sections, out=args.out, html=args.html, fast=args.fast, seed=args.seed)
    elif args.command == "blas":
        _blas(args.best)
    elif args.command == "app":
        from numformer.cli import apps

        return apps.run(args)
    elif args.command in ("embed", "search"):
        from numformer.cli import pretrained

        return getattr(pretrained, args.command)(args)
    elif args.command == "info":
        from numformer.train import lm

        lm.info(args.path)
    elif args.command == "generate":
        from numformer.models import GPT
        from numformer.models.sampling import check_sampling
        from numformer.train import lm
        from numformer.viz.tables import stream_to_stdout

        device = _device(args.device)
        model, tokenizer, _ = GPT.load(lm.resolve_model_folder(args.model))
        if device is not None:
            model.to(device)
        if tokenizer is None:
            raise UsageError(f"{args.model} has no tokenizer.json, so text cannot be encoded")
        lm.check_prompt(tokenizer, args.prompt, "--prompt")  # every check before any output
        check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
        sys.stdout.write(args.prompt)
        lm.sample_text(
            model,
            tokenizer,
            args.prompt,
            args.max_new_tokens,
            seed=args.seed,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            stream=stream_to_stdout,
        )
        sys.stdout.write("\n")
    return 0


def _parse(argv):
    """Parse the command line; ``numformer app NAME predict`` takes its inputs anywhere among
    its flags (argparse would refuse those that follow a flag)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command == "app" and not any(e.startswith("-") for e in extra):
            args.inputs = list(args.inputs) + extra
        else:
            parser.parse_args(argv)  # the error argparse gives for them
    return args


def _tqdm_write(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text)


def _user_errors() -> tuple:
    """Exceptions that mean the user asked for something impossible (not a numformer bug)."""
    errors = [UsageError, ValueError, FileNotFoundError]
    try:
        from numformer.train.checkpoint import CheckpointError

        errors.append(CheckpointError)
    except ImportError:
        pass
    return tuple(errors)


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
    """An error's message on one line (a list of problems joined with '; ')."""
    return "; ".join(part.strip() for part in str(err).splitlines() if part.strip())


def main(argv: list[str] | None = None) -> int:
    # Importing numformer already runs its kernels on every core and tunes the allocator
    # (NUMFORMER_NUM_THREADS and NUMFORMER_TUNE_ALLOCATOR change that). NumPy's floating-point
    # warnings stay quiet: a run that goes non-finite is caught by the trainer and reported in
    # one line, not as a page of RuntimeWarnings.
    import numpy as np

    np.seterr(all="ignore")
    try:
        code = _main(argv)
    except BaseException:  # a bug (a traceback): under MPI the other ranks must not wait for this one
        from numformer import distributed

        if distributed.world().size > 1:
            import traceback

            traceback.print_exc()
            distributed.world().abort(1)
        raise
    if code not in (0, None):
        from numformer import distributed

        world = distributed.world()
        if world.size > 1:  # the other ranks may wait in a collective for this one: end them all
            world.abort(code)
    return code


def _main(argv) -> int:
    try:
        return _dispatch(_parse(argv))
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
    return 2


if __name__ == "__main__":
    sys.exit(main())

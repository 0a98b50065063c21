"""``numformer train``: train a GPT language model on a text file or folder."""

from __future__ import annotations

import sys

from numformer.cli.common import UsageError, add_device, device, tqdm_write, true_or_false

HELP = "train a GPT language model on a text file or folder"
EXAMPLE = (
    "examples:\n  numformer train --max-steps 500 --out runs/small\n"
    "  numformer train --config my.toml --data notes.txt --n-layer 2\n"
    "  numformer train --out runs/small --resume"
)


def add_run_flags(parser) -> None:
    """``--config`` and one flag per setting of a run (``RunConfig``), grouped by section."""
    from numformer.train.lm import ALIASES, RunConfig

    parser.add_argument("--config", help="TOML file with any of the settings below")
    groups = {
        None: parser.add_argument_group("run settings (override the config file)"),
        "model": parser.add_argument_group("model settings (GPTConfig)"),
        "train": parser.add_argument_group("trainer settings (TrainConfig)"),
    }
    aliases = {target: alias for alias, target in ALIASES.items()}
    for name, (section, kind, default) in RunConfig.settings().items():
        flag = "--" + aliases.get(name, name).replace("_", "-")  # one flag per setting
        kind = true_or_false if kind is bool else kind
        groups[section].add_argument(flag, dest=name, type=kind, default=None, help=f"default: {default!r}")


def given_settings(args) -> dict:
    """The settings the user gave: the TOML file's, then the flags' over them."""
    from numformer.train.lm import RunConfig, read_toml

    given = read_toml(args.config) if args.config else {}
    flags = {name: getattr(args, name) for name in RunConfig.settings() if getattr(args, name, None) is not None}
    if "out_dir" in flags:
        given.pop("out", None)
    return {**given, **flags}


def run_config(args):
    """The run's ``RunConfig``: the defaults, the TOML file's settings, then the flags'."""
    from numformer.train.lm import RunConfig

    config = RunConfig.from_toml(args.config) if args.config else RunConfig()
    overrides = {name: getattr(args, name) for name in RunConfig.settings() if getattr(args, name, None) is not None}
    return config.updated(overrides, source="command line")


def add_parser(command) -> None:
    parser = command("train", HELP, EXAMPLE)
    add_run_flags(parser)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint (the run's settings)"
    )
    parser.add_argument(
        "--resume-from", metavar="STEP|PATH", help="continue from a chosen checkpoint: its step, or its folder"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a run already in --out (deletes it)")
    parser.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: train on although the data is not the text the run began with (recorded in run.json)",
    )
    add_device(parser)


def run(args) -> int:
    from pathlib import Path

    from numformer.train import lm

    resume = args.resume or args.resume_from is not None
    if resume and args.overwrite:
        raise UsageError("numformer train: --overwrite starts over; it cannot go with --resume or --resume-from")
    if args.allow_data_change and not resume:
        raise UsageError("numformer train: --allow-data-change goes with --resume or --resume-from")
    if resume:
        given = given_settings(args)
        out = Path(given.get("out_dir", given.get("out", lm.RunConfig().train.out_dir)))
        config = lm.config_for_resume(out, given, allow_data_change=args.allow_data_change)
    else:
        config = run_config(args)
    _, _, result = lm.train(
        config,
        resume=args.resume,
        resume_from=args.resume_from,
        overwrite=args.overwrite,
        write=tqdm_write,
        device=device(args.device),
        allow_data_change=args.allow_data_change,
    )
    if result.status == "interrupted" and result.reason == "interrupted by SIGHUP":
        return 129  # the terminal is gone: nothing to print to (128 + SIGHUP, as a shell reports it)
    if result.status == "interrupted":
        print(f"interrupted at step {result.step}: checkpoint saved; continue with --resume", file=sys.stderr)
        return 130
    if result.status in ("diverged", "fatal"):
        print(f"error: {result.reason}", file=sys.stderr)
        return 1
    return 0

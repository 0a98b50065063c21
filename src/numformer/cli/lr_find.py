"""``numformer lr-find``: sweep the learning rate and suggest one."""

from __future__ import annotations

from numformer.cli.train import add_run_flags, run_config

HELP = "sweep the learning rate and suggest one (plot in --out)"
EXAMPLE = "example: numformer lr-find --config my.toml --out runs/lr"


def add_parser(command) -> None:
    parser = command("lr-find", HELP, EXAMPLE)
    add_run_flags(parser)
    parser.add_argument("--steps", type=int, default=100, help="sweep length (100)")


def run(args) -> int:
    from numformer.train import lm

    lm.find_lr(run_config(args), num_steps=args.steps)
    return 0

"""``numformer blas``: which OpenBLAS kernels NumPy runs, and the fastest on this CPU."""

from __future__ import annotations

import os

HELP = "which OpenBLAS kernels NumPy runs, and the fastest on this CPU (measured)"
EXAMPLE = "example: numformer blas\n  then, in your shell profile: export OPENBLAS_CORETYPE=<the core it names>"


def add_parser(command) -> None:
    parser = command("blas", HELP, EXAMPLE)
    parser.add_argument(
        "--best", action="store_true", help="print only the core to set OPENBLAS_CORETYPE to (empty: none known)"
    )


def run(args) -> int:
    from numformer.blas import blas_core, fastest_blas_core
    from numformer.viz.tables import say, table

    if args.best:
        print(fastest_blas_core()[1] or "")
        return 0
    current = blas_core()
    if current is None:
        say("NumPy's BLAS is not an OpenBLAS numformer can ask (or this is not Linux): nothing to choose.")
        return 0
    forced = os.environ.get("OPENBLAS_CORETYPE")
    say(f"NumPy runs OpenBLAS's {current} kernels" + (f" (OPENBLAS_CORETYPE={forced})" if forced else ""))
    default, best, rates = fastest_blas_core()
    if not rates:
        say("the measurement failed: no kernel family could be timed")
        return 0
    rows = []
    for core, rate in sorted(rates.items(), key=lambda kv: -kv[1]):
        notes = [note for note, on in (("OpenBLAS's pick", core == default), ("fastest", core == best)) if on]
        rows.append([core, f"{rate:.1f}", " ".join(notes)])
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
    return 0

"""Terminal tables: ``rich`` when installed (the ``demo`` extra), plain text otherwise."""

from __future__ import annotations

try:
    from rich.console import Console
    from rich.table import Table
except ImportError:  # pragma: no cover - exercised only without the extra
    Console = Table = None

_console = Console() if Console else None


def heading(text: str) -> None:
    if _console:
        _console.rule(f"[bold]{text}")
    else:
        print(f"\n== {text} ==")


def say(text: str) -> None:
    """One line of plain text: never wrapped (a command in it stays one line to copy, whatever
    the terminal's width or none) and never read as rich markup (``[...]`` in a path stays)."""
    if _console:
        _console.print(text, soft_wrap=True, markup=False, highlight=False, emoji=False)
    else:
        print(text)


def table(title: str, columns: list[str], rows: list[list]) -> None:
    if _console:
        t = Table(title=title, title_justify="left")
        for i, c in enumerate(columns):
            t.add_column(c, justify="left" if i == 0 else "right")
        for r in rows:
            t.add_row(*[str(v) for v in r])
        _console.print(t)
        return
    print(title)
    widths = [max(len(str(x)) for x in [c] + [r[i] for r in rows]) for i, c in enumerate(columns)]
    print("  ".join(str(c).rjust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))


def stream_to_stdout(piece: str) -> None:
    """Write ``piece`` to stdout at once (streamed generation)."""
    import sys

    sys.stdout.write(piece)
    sys.stdout.flush()

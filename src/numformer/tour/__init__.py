"""``numformer tour``: the seed's sections reproduced with numformer, in the terminal, as PNG
figures, and as one self-contained interactive HTML report."""

from __future__ import annotations

import time
from pathlib import Path

from numformer.tour.sections import SECTIONS, Context, Section


def run(
    sections=None,
    out="runs/tour",
    html: bool = False,
    fast: bool = False,
    attention_model="runs/demo/model",
    show=True,
    seed: int = 42,
) -> list[Section]:
    """Run the chosen sections (default all) and print them; with ``html`` also write
    ``<out>/tour.html``. Returns the sections (their ``claims`` hold the measured numbers)."""
    from numformer.viz.tables import heading, say, table

    numbers = sorted(set(sections or SECTIONS))
    unknown = [n for n in numbers if n not in SECTIONS]
    if unknown:
        raise ValueError(f"tour: no section {unknown[0]}; choose from {sorted(SECTIONS)}")
    ctx = Context(Path(out), fast, seed)
    results = []
    for n in numbers:
        start = time.perf_counter()
        section = SECTIONS[n](ctx)
        section.claims["seconds"] = time.perf_counter() - start
        results.append(section)
        if show:
            heading(f"{section.number}. {section.title}")
            for line in section.text:
                say(line)
            for t in section.tables:
                table(t.title, t.columns, t.rows)
            for f in section.figures:
                say(f"figure: {f}")
    if html:
        from numformer.tour.html import write_report

        path = write_report(results, Path(out) / "tour.html", Path(attention_model))
        if show:
            say(f"HTML report: {path}")
    return results

"""MkDocs hook: the tutorials are notebooks, executed when the site is built.

Each tutorial has one source, ``docs/tutorials/NAME.py`` in Jupytext's percent format (``# %%``
starts a code cell, ``# %% [markdown]`` a text cell), which opens in Jupyter as a notebook and
reads as a plain script. At build time every source is executed top to bottom in a fresh
Jupyter kernel (nbclient, two at a time, each in its own temporary folder) and turned into a
Markdown page: code in fenced blocks, printed output in ``text`` blocks, matplotlib figures as
PNG files beside the page. The executed notebook is published too (``NAME.ipynb``), so a reader
can download and run it. A cell that raises fails the build, naming the notebook and the cell:
a tutorial on the site always ran as shown.

The hook also writes the tour's interactive attention explorer (``numformer tour --html``) as
``tour.html``, so the site links to a page built from the code it documents.

Environment: ``NUMFORMER_DOCS_CACHE=1`` reuses the pages of sources that have not changed since
the last build (``make docs-serve`` sets it; a build for the tests never does).
``NUMFORMER_DOCS_JOBS`` sets how many notebooks run at once (default 2).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.notebooks")

TUTORIALS = "tutorials"
CACHE = Path(".cache/docs-notebooks")
TIMEOUT_S = 300  # one cell; the tutorials are sized to run in seconds
# The kernels share the machine: one thread each, numformer's and OpenBLAS's (two notebooks run at
# once; idle OpenBLAS threads busy-wait, and on a loaded machine they slow small GEMMs tenfold).
KERNEL_ENV = {
    "NUMFORMER_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}

RESULTS: dict[str, dict] = {}  # name -> {"seconds": ..., "figures": ...}: what the last build ran


class NotebookError(RuntimeError):
    """A tutorial's cell raised while the site was built."""


def _execute(source: Path) -> dict:
    """Run ``source`` (Jupytext percent format) in a fresh kernel; return the executed notebook
    as JSON text and the seconds it took."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = jupytext.reads(source.read_text(encoding="utf-8"), fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"nb-{source.stem}-") as cwd:
        client = NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": cwd}})
        try:
            client.execute(env={**os.environ, **KERNEL_ENV})
        except CellExecutionError as err:
            raise NotebookError(f"{source}: a cell raised while the site was built:\n{err}") from None
    return {"notebook": nbformat.writes(nb), "seconds": time.perf_counter() - start}


def _fence(text: str, lang: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def to_markdown(name: str, notebook_json: str) -> tuple[str, dict[str, bytes]]:
    """The executed notebook as a Markdown page and its figures (file name -> PNG bytes)."""
    nb = json.loads(notebook_json)
    parts = [
        f'!!! note "Run it yourself"\n    This page is a notebook, executed when the site was built. '
        f"Download [{name}.ipynb]({name}.ipynb) (with its outputs) or its source [{name}.py]({name}.py) "
        "(a plain script in Jupytext's percent format), and run it with numformer installed.\n"
    ]
    figures: dict[str, bytes] = {}
    for index, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            parts.append(source + "\n")
            continue
        if cell["cell_type"] != "code" or not source.strip():
            continue
        parts.append(_fence(source, "python"))
        for output in cell.get("outputs", []):
            kind = output["output_type"]
            if kind == "stream":
                text = "".join(output["text"])
                if output.get("name") == "stderr" and not text.strip():
                    continue
                parts.append(_fence(text, "text"))
            elif kind in ("execute_result", "display_data"):
                data = output["data"]
                if "image/png" in data:
                    png = base64.b64decode("".join(data["image/png"]))
                    file = f"{name}_{index}_{len(figures)}.png"
                    figures[file] = png
                    parts.append(f'![figure {len(figures)} of {name}](figures/{file}){{ loading="lazy" }}\n')
                elif "text/plain" in data:
                    parts.append(_fence("".join(data["text/plain"]), "text"))
            elif kind == "error":  # only reachable with allow_errors, which the build never sets
                raise NotebookError(f"{name}: cell {index} raised {output['ename']}")
    return "\n".join(parts), figures


def _cache_key(source: Path) -> str:
    return hashlib.sha256(source.read_bytes()).hexdigest()[:16]


def run_all(sources: list[Path], use_cache: bool, jobs: int) -> dict[str, dict]:
    """Execute every source (``jobs`` at a time), reusing cached results where allowed."""
    results: dict[str, dict] = {}
    todo = []
    for source in sources:
        cached = CACHE / f"{source.stem}-{_cache_key(source)}.json"
        if use_cache and cached.is_file():
            results[source.stem] = json.loads(cached.read_text())
        else:
            todo.append(source)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for source, result in zip(todo, pool.map(_execute, todo)):
            results[source.stem] = result
            log.info("notebook %s executed in %.1f s", source.name, result["seconds"])
            if use_cache:
                CACHE.mkdir(parents=True, exist_ok=True)
                (CACHE / f"{source.stem}-{_cache_key(source)}.json").write_text(json.dumps(result))
    return results


def _tour_html() -> bytes:
    """The tour's interactive report (sections 2 and 3, fast), written by numformer itself."""
    from numformer.tour import run

    with tempfile.TemporaryDirectory(prefix="docs-tour-") as out:
        run([2, 3], out=out, html=True, fast=True, show=False, attention_model=Path(out) / "no-model")
        return (Path(out) / "tour.html").read_bytes()


def on_files(files: Files, config) -> Files:
    docs = Path(config["docs_dir"])
    sources = sorted((docs / TUTORIALS).glob("*.py"))
    use_cache = os.environ.get("NUMFORMER_DOCS_CACHE", "0") == "1"
    jobs = int(os.environ.get("NUMFORMER_DOCS_JOBS", "2"))
    results = run_all(sources, use_cache, jobs)
    RESULTS.clear()
    for source in sources:
        name = source.stem
        page, figures = to_markdown(name, results[name]["notebook"])
        files.append(File.generated(config, f"{TUTORIALS}/{name}.md", content=page))
        files.append(File.generated(config, f"{TUTORIALS}/{name}.ipynb", content=results[name]["notebook"]))
        for file, png in figures.items():
            files.append(File.generated(config, f"{TUTORIALS}/figures/{file}", content=png))
        RESULTS[name] = {"seconds": results[name]["seconds"], "figures": len(figures)}
    files.append(File.generated(config, "tour.html", content=_tour_html()))
    return files

"""MkDocs hook: tables and figures made from recorded runs, never typed by hand.

A page asks for one with a marker on a line of its own, ``<!-- generated: NAME -->``; the hook
replaces it with the table ``TABLES[NAME]`` builds from the results file it reads:

- ``bench-machine``, ``bench-suite``, ``bench-attention``, ``bench-memory``: ``bench/results/suite.json``
  (``make bench``);
- ``bench-ops``: ``bench/results/ops.json`` (``bench/bench_ops.py``: attention, layer norm, the
  recurrent layers);
- ``bench-minilm``: ``bench/results/minilm.json`` (``bench/bert_vs_st.py``);
- ``bench-plain``: ``bench/results/plain_script.json`` (``bench/plain_script.py``);
- ``apps``: ``numformer.apps.registry()``, whose scores are ``numformer/apps/measured.json``
  (the project's last full runs); the README's table is checked against the same function
  (``tests/docs/test_readme.py``).

The benchmark's figure (``bench/results/suite.png``) is published as ``guides/suite.png``. An
unknown marker, or a results file that is missing, fails the build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)


def _results(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _ratio(row: dict) -> str:
    return f"{row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"


def _cpu(m: dict) -> str:
    """The CPU as a results file's ``machine`` names it (family/model numbers where recorded)."""
    family = m.get("cpu_family_model")
    return f"{m['cpu']} (family/model {family})" if family else m["cpu"]


def bench_machine() -> str:
    suite = _results("suite.json")
    m = suite["machine"]
    return (
        f"Recorded {suite['when'][:10]} on {_cpu(m)}, {m['cores']} cores, Python {m['python']}, NumPy {m['numpy']}, "
        f"PyTorch {m['torch']}; {m['threads']} threads each, "
        f"tuned allocator {'on' if m['tuned_allocator'] else 'off'}, "
        f"OpenBLAS kernels {m['openblas_core']}; this machine's float32 matmul rate "
        f"{suite['matmul_gflops']:.0f} GFLOP/s."
    )


def bench_suite() -> str:
    rows = [
        "| workload | shape | numformer (ms) | PyTorch (ms) | numformer / PyTorch (min-max) "
        "| MFU numformer | MFU PyTorch |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    suite = _results("suite.json")
    for w in suite["workloads"]:
        rows.append(
            f"| `{w['name']}` | {w['shape']} | {w['numformer_ms']:.1f} | {w['torch_ms']:.1f} | {_ratio(w)} | "
            f"{100 * w['mfu_numformer']:.0f}% | {100 * w['mfu_torch']:.0f}% |"
        )
    core = suite.get("second_core")
    if core:  # recorded from the run that measured the demo on one thread too
        rows.append(
            f"\nOn {core['threads']} threads instead of one, the demo's step takes "
            f"{100 * core['numformer']:.0f}% less time in numformer and {100 * core['torch']:.0f}% less in PyTorch."
        )
    return "\n".join(rows)


def bench_attention() -> str:
    rows = [
        "| T | numformer (ms) | PyTorch (ms) | numformer peak (MB) | PyTorch peak (MB) |",
        "|--:|--:|--:|--:|--:|",
    ]
    for a in _results("suite.json")["attention"]:
        n, t = a["numformer"], a["torch"]
        rows.append(f"| {a['T']} | {n['ms']:.1f} | {t['ms']:.1f} | {n['peak_mb']:.0f} | {t['peak_mb']:.0f} |")
    return "\n".join(rows)


def bench_memory() -> str:
    rows = [
        "| size | shape | weights (MB) | numformer peak (MB) | PyTorch peak (MB) | numformer / PyTorch |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for m in _results("suite.json")["training_memory"]:
        n, t = m["numformer"], m["torch"]
        rows.append(
            f"| {m['name']} | {m['shape']} | {n['model_mb']:.1f} | {n['peak_mb']:.0f} | {t['peak_mb']:.0f} | "
            f"{m['ratio']:.2f} |"
        )
    return "\n".join(rows)


def bench_ops() -> str:
    data = _results("ops.json")
    m = data["machine"]
    rows = [
        f"Recorded on {_cpu(m)}, NumPy {m['numpy']} (OpenBLAS kernels {m['openblas_core']}), PyTorch "
        f"{m['torch']}; {m['numformer_kernel_threads']} kernel threads, {m['torch_threads']} PyTorch threads.",
        "",
        "| workload | numformer (ms) | PyTorch (ms) | numformer / PyTorch (min-max) | goal |",
        "|---|--:|--:|--:|--:|",
    ]
    for r in data["rows"]:
        goal = f"<= {r['target']}" if "target" in r else ""
        rows.append(f"| {r['name']} | {r['numformer_ms']:.2f} | {r['torch_ms']:.2f} | {_ratio(r)} | {goal} |")
    return "\n".join(rows)


def bench_minilm() -> str:
    data = _results("minilm.json")
    rows = [
        "| workload | texts | numformer (sentences/s) | sentence-transformers (sentences/s) | numformer / s-t time |",
        "|---|--:|--:|--:|--:|",
    ]
    for r in data["rows"]:
        rows.append(
            f"| `{r['name']}` | {r['texts']} | {r['numformer_sentences_per_s']:.1f} | "
            f"{r['torch_sentences_per_s']:.1f} | {_ratio(r)} |"
        )
    rows.append("")
    rows.append(f"Lowest cosine between the two libraries' vectors: {data['cosine_min']:.7f}.")
    return "\n".join(rows)


def apps_table() -> str:
    """The applications table (README and site): one row per app, from the registry."""
    from numformer.apps import registry

    rows = [
        "| app | data | licence | metric | numformer | baseline | n test | train (2 cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, app in registry().items():
        m = app.measured
        rows.append(
            f"| `{name}` | {app.data} | {app.licence} | {app.metric} | {m['score']:.4f} | "
            f"{m['baseline_score']:.4f} ({app.baseline}) | {m['n_test']} | {m['train_minutes']:.1f} min |"
        )
    return "\n".join(rows)


def bench_plain() -> str:
    data = _results("plain_script.json")
    m = data["machine"]
    rows = [
        f"Recorded {data['when'][:10]} on {_cpu(m)}, NumPy {m['numpy']} (OpenBLAS kernels {m['openblas_core']}), "
        f"PyTorch {m['torch']}; {m['numformer_kernel_threads']} kernel threads, {m['torch_threads']} PyTorch threads, "
        "each as it sets itself on import.",
        "",
        "| workload | shape | numformer (ms) | PyTorch (ms) | numformer / PyTorch (min-max) | goal |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for r in data["rows"]:
        rows.append(
            f"| `{r['name']}` | {r['shape']} | {r['numformer_ms']:.1f} | {r['torch_ms']:.1f} | {_ratio(r)} "
            f"| <= {r['target']} |"
        )
    return "\n".join(rows)


TABLES = {
    "bench-machine": bench_machine,
    "bench-suite": bench_suite,
    "bench-attention": bench_attention,
    "bench-memory": bench_memory,
    "bench-ops": bench_ops,
    "bench-minilm": bench_minilm,
    "bench-plain": bench_plain,
    "apps": apps_table,
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(f"{page.file.src_uri}: no generated table {name!r}; known: {', '.join(TABLES)}")
        return TABLES[name]()

    return MARKER.sub(replace, markdown)


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "guides/suite.png", content=(RESULTS / "suite.png").read_bytes()))
    return files

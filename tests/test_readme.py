"""The README is a front door: short, its Python runs as written, its applications table is the
one the registry makes (never typed by hand), and its links lead to files that exist."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _tables_hook():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "docs" / "hooks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert math.isfinite(namespace["loss"].item())
    assert namespace["step"] == 2
    assert "0.layers.0.self_attn.in_proj_weight" in namespace["model"].state_dict()


def test_readme_is_short_and_its_applications_table_is_generated():
    text = README.read_text()
    assert len(text.splitlines()) <= 120
    assert _tables_hook().apps_table() in text  # from numformer/apps/measured.json via the registry


def test_readme_links_lead_to_files():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert len(local) >= 6
    for link in local:
        assert (ROOT / link).exists(), link

"""The README's Python blocks run as written (with the output folder moved to a temp dir)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    code = "\n".join(blocks).replace('"runs/example"', repr(str(tmp_path)) + ", progress=False")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["result"].status == "completed"
    assert (tmp_path / "metrics.png").exists() and (tmp_path / "health_report.txt").exists()

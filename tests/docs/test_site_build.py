"""The documentation site: it builds with ``mkdocs build --strict`` (no broken link, no missing
reference), every tutorial notebook ran top to bottom with its figures on the page, the pages
fetch nothing from another host, and the tables that carry measurements come from the recorded
results files."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import numformer as nf

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))


def test_the_site_has_every_page_of_the_navigation(site):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    for page in ("index.html", "getting-started.html", "guides/coming-from-pytorch.html", "guides/performance.html"):
        assert page in pages
    api = [p for p in pages if p.startswith("api/")]
    assert len(api) >= 12  # the index and one page per subject
    assert len([p for p in pages if p.startswith("tutorials/")]) == len(TUTORIALS) + 1  # + the index
    assert (site / "search" / "search_index.json").is_file()
    assert (site / "tour.html").stat().st_size > 10_000  # the attention explorer numformer wrote


@pytest.mark.parametrize("source", TUTORIALS, ids=lambda p: p.stem)
def test_every_tutorial_ran_top_to_bottom_with_its_figures(site, source):
    notebook = json.loads((site / "tutorials" / f"{source.stem}.ipynb").read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code, source
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))  # each ran, in order
    outputs = [o for c in code for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    text = source.read_text()
    shown = text.count("plt.show()") + ("display(Image(" in text)  # each call shows at least one
    assert figures >= shown, f"{source.name}: {shown} figures shown in the source, {figures} in the notebook"
    page = (site / "tutorials" / f"{source.stem}.html").read_text()
    assert page.count('src="figures/') == figures
    for name in re.findall(r'src="figures/([^"]+)"', page):
        assert (site / "tutorials" / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    assert (site / "tutorials" / source.name).is_file()  # the source, for download


class _Fetched(HTMLParser):
    """The URLs a page makes the browser fetch (scripts, styles, images, frames), not links."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed") and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href") and attrs.get("rel") not in ("canonical", "alternate"):
            self.urls.append(attrs["href"])


def test_no_page_fetches_anything_from_another_host(site):
    remote = re.compile(r"^(https?:)?//", re.I)
    for page in site.rglob("*.html"):
        parser = _Fetched()
        parser.feed(page.read_text())
        assert not [u for u in parser.urls if remote.match(u)], page.relative_to(site)
    for sheet in site.rglob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", sheet.read_text()), sheet.relative_to(site)
    assert "fonts.googleapis" not in (site / "index.html").read_text()


def test_measured_tables_come_from_the_recorded_results(site):
    suite = json.loads((ROOT / "bench" / "results" / "suite.json").read_text())
    performance = (site / "guides" / "performance.html").read_text()
    for workload in suite["workloads"]:
        assert f"{workload['ratio']:.2f}x ({workload['ratio_min']:.2f}-{workload['ratio_max']:.2f})" in performance
    assert (site / "guides" / "suite.png").read_bytes() == (ROOT / "bench" / "results" / "suite.png").read_bytes()
    home = (site / "index.html").read_text()
    from numformer.apps import registry

    for name, app in registry().items():
        assert f"<code>{name}</code>" in home and f"{app.measured['score']:.4f}" in home
    assert "<!-- generated:" not in home + performance


def test_api_pages_render_the_docstrings_sections(site):
    nn_page = (site / "api" / "nn.html").read_text()
    start = nn_page.index('id="numformer.nn.attention.MultiheadAttention"')
    section = nn_page[start : nn_page.index('id="numformer.nn.attention.MultiheadAttention.forward"')]
    assert "Parameters:" in section and "embed_dim" in section  # Args: rendered
    assert "Shape" in section
    assert nf.nn.MultiheadAttention.__doc__.count("Args:") == 1

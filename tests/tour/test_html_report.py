"""The HTML report in a real browser: headless Chromium (Debian's, driven by selenium) opens
the self-contained page, a screenshot is saved, and clicking a character changes which
weights are highlighted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from browser import headless_chromium
from numformer.tour import run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("tour_html")
    run([2, 4], out=out, html=True, fast=True, show=False, attention_model=out / "no-model")
    return out / "tour.html"


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium(1200, 1600)
    yield driver
    driver.quit()


def test_report_is_self_contained(report):
    page = report.read_text()
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    data = json.loads(page.split('id="attention-data">')[1].split("</script>")[0].replace("<\\/", "</"))
    gpt, bert = data["models"]
    for model in (gpt, bert):
        assert model["sentences"] and model["layers"] >= 1 and model["heads"] >= 1
    assert bert["name"] == "all-MiniLM-L6-v2" and bert["layers"] == 6 and bert["heads"] == 12
    sentence = bert["sentences"][0]
    assert sentence["tokens"][0] == "[CLS]" and sentence["tokens"][-1].strip() == "[SEP]"
    w = np.array(sentence["weights"])  # (layer, head, query, key)
    assert w.shape == (6, 12, len(sentence["tokens"]), len(sentence["tokens"]))
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-3)


def _weights(driver):
    return [float(el.get_attribute("data-weight")) for el in driver.find_elements(By.CSS_SELECTOR, ".tok")]


def test_clicking_a_token_changes_the_highlighted_weights(report, browser, tmp_path):
    browser.get(report.as_uri())
    tokens = browser.find_elements(By.CSS_SELECTOR, ".tok")
    assert len(tokens) > 10
    browser.save_screenshot(str(tmp_path / "tour_report.png"))
    tokens[3].click()
    first = _weights(browser)
    tokens[12].click()
    second = _weights(browser)
    browser.save_screenshot(str(tmp_path / "tour_report_clicked.png"))
    assert first != second
    # causal attention: a query at position i spreads weight 1 over positions 0..i only
    assert sum(first[:4]) == pytest.approx(1.0, abs=1e-3) and not any(first[4:])
    assert sum(second[:13]) == pytest.approx(1.0, abs=1e-3)
    assert "attends most to" in browser.find_element(By.ID, "readout").text
    assert (tmp_path / "tour_report.png").stat().st_size > 10_000
    assert np.isfinite(first).all()


def test_the_pretrained_bert_heads_are_bidirectional(report, browser):
    from selenium.webdriver.support.ui import Select

    browser.get(report.as_uri())
    Select(browser.find_element(By.ID, "model")).select_by_index(1)
    assert "MiniLM" in browser.find_element(By.ID, "about").text
    tokens = browser.find_elements(By.CSS_SELECTOR, ".tok")
    assert tokens[0].text == "[CLS]"
    tokens[2].click()
    weights = _weights(browser)
    assert sum(weights) == pytest.approx(1.0, abs=1e-2)
    assert sum(weights[3:]) > 0.01  # a token attends to tokens after it, unlike the causal GPT

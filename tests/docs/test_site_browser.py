"""The built site in a real browser (Debian's headless Chromium, driven by selenium, as the tour's
report test does): the home page, an API page, a tutorial with a rendered figure, search, and the
dark-mode toggle, with no request leaving the machine.

The site is served from its build folder by a local HTTP server on 127.0.0.1 (search runs in a
web worker, which browsers do not start from file:// pages). Every other host is unreachable:
Chromium resolves no name but 127.0.0.1 and sends everything else to a closed local proxy port,
and the browser's own network log is checked afterwards: every request went to the local server
(or was a data:/blob: URL)."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from browser import headless_chromium


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium(1280, 1400, network_log=True)
    yield driver
    driver.quit()


def _requested(driver) -> list[str]:
    """Every URL the browser asked for since the last call (the DevTools network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _assert_local(urls: list[str], server: str) -> None:
    elsewhere = [u for u in urls if not u.startswith((server + "/", "data:", "blob:", "about:"))]
    assert not elsewhere, f"requests left the local server: {elsewhere}"
    assert urls, "the network log recorded no request at all"


def _wait(driver, condition, timeout=30):
    return WebDriverWait(driver, timeout).until(condition)


def test_home_page_and_dark_mode(browser, server, tmp_path):
    browser.get(f"{server}/index.html")
    assert "numformer" in browser.title
    assert browser.find_element(By.CSS_SELECTOR, "article h1").text == "numformer"
    assert "translate-numbers" in browser.find_element(By.CSS_SELECTOR, "article").text  # the apps table
    copy = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "button[data-md-type='copy']"))
    assert copy[0].get_attribute("title") == "Copy to clipboard"  # Material's code copy button
    scheme = browser.find_element(By.TAG_NAME, "body").get_attribute("data-md-color-scheme")
    browser.find_element(By.CSS_SELECTOR, "label.md-header__button[for^='__palette']").click()
    _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-md-color-scheme") != scheme)
    browser.save_screenshot(str(tmp_path / "home.png"))
    assert (tmp_path / "home.png").stat().st_size > 20_000
    _assert_local(_requested(browser), server)


def test_api_page_shows_multihead_attention_with_its_sections(browser, server):
    browser.get(f"{server}/api/nn.html#numformer.nn.attention.MultiheadAttention")
    heading = browser.find_element(By.ID, "numformer.nn.attention.MultiheadAttention")
    entry = heading.find_element(By.XPATH, "./following-sibling::div[contains(@class, 'doc-contents')]")
    text = entry.text
    assert "Parameters:" in text and "embed_dim" in text and "num_heads" in text  # Args:
    assert "Shape" in text and "(N, L, E)" in text  # Shape:
    assert "Raises:" in text
    _assert_local(_requested(browser), server)


def test_tutorial_page_shows_its_rendered_figures(browser, server, tmp_path):
    browser.get(f"{server}/tutorials/attention.html")
    figures = browser.find_elements(By.CSS_SELECTOR, "article img[src^='figures/']")
    assert len(figures) >= 2
    for image in figures:
        browser.execute_script("arguments[0].scrollIntoView();", image)
        _wait(browser, lambda d, image=image: d.execute_script("return arguments[0].complete", image))
        assert browser.execute_script("return arguments[0].naturalWidth", image) > 200
    assert "largest difference from NumPy" in browser.find_element(By.CSS_SELECTOR, "article").text
    browser.save_screenshot(str(tmp_path / "tutorial.png"))
    _assert_local(_requested(browser), server)


def test_search_finds_a_page(browser, server):
    browser.get(f"{server}/index.html")
    box = _wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input")))
    box.click()
    box.send_keys("MultiheadAttention")
    results = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item"))
    assert results and any("MultiheadAttention" in r.text for r in results)
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".md-search-result__link")]
    assert any("/api/nn.html" in link for link in links)
    box.send_keys(Keys.ESCAPE)
    _assert_local(_requested(browser), server)

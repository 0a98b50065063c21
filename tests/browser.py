"""Headless Chromium for the suite's browser tests (Debian's chromium and chromium-driver,
driven by selenium): the site's and the tour report's. Nothing leaves the machine: Chromium
resolves no name but 127.0.0.1 and sends every other request to a closed local port."""

from __future__ import annotations

import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
)


def headless_chromium(width: int, height: int, network_log: bool = False):
    """A Chrome driver of a ``width`` x ``height`` window; ``network_log``: keep DevTools'
    performance log (every request the page makes). The caller quits it."""
    chromedriver = shutil.which("chromedriver")
    assert chromedriver, "chromedriver is missing: `make browser` installs Debian's chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    if network_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(chromedriver), options=options)

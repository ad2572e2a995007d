"""The HTML report in headless Chromium: every picture loads (WebDriver, like tests/serve).

Chromium and chromedriver come from Debian (``scripts/setup-browser``); the test is skipped only
when Chromium is absent. It speaks the W3C WebDriver protocol with the standard library, so it
needs no serving extra.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from watchnext.api import Ranker
from watchnext.evaluate import html, schema

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                        else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--allow-file-access-from-files"]
IMAGES = "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt]);"


def _call(url: str, method: str = "GET", body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["value"]


@pytest.fixture
def browser(tmp_path):
    """``open(path) -> [(complete, naturalWidth, alt)]`` for the page's images."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (scripts/setup-browser installs it)")
    driver = shutil.which("chromedriver")
    assert driver, "Chromium is installed but chromedriver is not: run scripts/setup-browser"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _call(f"{base}/status")["ready"]:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={tmp_path / 'p'}"]}
        session = _call(f"{base}/session", "POST", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})["sessionId"]
        url = f"{base}/session/{session}"

        def open_page(path: Path) -> list:
            _call(f"{url}/url", "POST", {"url": path.resolve().as_uri()})
            return _call(f"{url}/execute/sync", "POST", {"script": IMAGES, "args": []})

        yield open_page
        _call(url, "DELETE")
    finally:
        process.terminate()
        process.wait(20)


def test_every_image_of_the_report_loads(browser, tmp_path, config, impressions):
    ranker = Ranker(config.replace(train={"max_epochs": 2})).fit(impressions, impressions)
    evaluation = schema.evaluation(ranker.evaluate(impressions), "test split")
    report = schema.Report("train", {"m": ranker.model_report({"test": evaluation}, 1.0)})
    images = browser(html.write_html(tmp_path / "report.html", report))
    assert len(images) == 4
    for complete, width, alt in images:
        assert complete and width > 0, alt

    broken = tmp_path / "broken.html"  # the check itself: a picture that cannot load fails it
    broken.write_text('<img src="data:image/png;base64,AAAA" alt="broken">')
    assert browser(broken) == [[True, 0, "broken"]]

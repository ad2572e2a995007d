"""End-to-end: the web page in headless Chromium, driven over the W3C WebDriver protocol.

Chromium and chromedriver come from Debian (``scripts/setup-browser``). The test is skipped only
when Chromium is absent; Chromium without chromedriver is a broken setup and fails.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .live import free_port, served, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                        else None)
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
TAB = "\ue004"  # the WebDriver key code for Tab
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900"]


class Browser:
    """The few WebDriver commands the test needs."""

    def __init__(self, driver_url: str, profile: Path):
        self.http = httpx.Client(base_url=driver_url, timeout=60)
        options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={profile}"]}
        response = self.http.post("/session", json={"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})
        response.raise_for_status()
        self.session = f"/session/{response.json()['value']['sessionId']}"

    def call(self, method: str, path: str, body: dict | None = None):
        response = self.http.request(method, self.session + path, json=body)
        value = response.json().get("value")
        if response.status_code >= 400:
            raise AssertionError(f"WebDriver {path}: {value}")
        return value

    def go(self, url: str) -> None:
        self.call("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        return self.call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css: str) -> list[str]:
        found = self.call("POST", "/elements", {"using": "css selector", "value": css})
        return [e[ELEMENT] for e in found]

    def type(self, css: str, text: str) -> None:
        element = self.find(css)
        self.call("POST", f"/element/{element}/clear", {})
        self.call("POST", f"/element/{element}/value", {"text": text})

    def click(self, css: str) -> None:
        self.call("POST", f"/element/{self.find(css)}/click", {})

    def text(self, element: str) -> str:
        return self.call("GET", f"/element/{element}/text")

    def attribute(self, element: str, name: str) -> str:
        return self.call("GET", f"/element/{element}/attribute/{name}")

    def value(self, css: str) -> str:
        return self.call("GET", f"/element/{self.find(css)}/property/value")

    def wait_text(self, css: str, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text(self.find(css))
            if needle in text:
                return text
            time.sleep(0.2)
        raise AssertionError(f"{css!r} never showed {needle!r}; last text: {text!r}")

    def close(self) -> None:
        self.http.delete(self.session)
        self.http.close()


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (scripts/setup-browser installs it)")
    driver = shutil.which("chromedriver")
    assert driver, "Chromium is installed but chromedriver is not: run scripts/setup-browser"
    port = free_port()
    process = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/status").json()["value"]["ready"], 30, "chromedriver")
        session = Browser(url, tmp_path / "profile")
        yield session
        session.close()
    finally:
        process.terminate()
        process.wait(20)


def test_web_page_recommends(browser, model_dir, serving):
    example = serving.store.examples["users"][0]
    with served(model_dir) as url:
        browser.go(url)
        browser.wait_text("#model", "model v1")
        browser.type("#user", example["user_id"] + TAB)  # leaving the field fills in the video
        wait_until(lambda: browser.value("#video") == example["last_video"], 10, "video field")
        browser.type("#k", "5")
        browser.click("#go")
        status = browser.wait_text("#status", "candidates for user")
        assert f"user {example['user_id']}" in status and "model v1" in status
        assert f"watching video {example['last_video']}" in status  # a known video
        rows = browser.find_all("#results tbody tr.item")
        assert len(rows) == 5
        header = browser.text(browser.find("#header"))
        for task in ("click", "long_view", "like", "source"):
            assert task in header
        sources = {browser.attribute(row, "data-source") for row in rows}
        assert sources <= {"cowatch", "embedding", "topic", "popular"}
        first = browser.text(rows[0])
        assert "video" in first and browser.attribute(rows[0], "data-video-id") in first

        browser.type("#user", "someone-new")
        browser.type("#video", "")
        browser.type("#k", "3")
        browser.click("#go")
        browser.wait_text("#status", "new user (cold start)")
        assert len(browser.find_all("#results tbody tr.item")) == 3

        browser.type("#device", "d" * 70)  # the API allows 64 characters: the page shows the 422
        browser.click("#go")
        error = browser.wait_text("#error", "error 422")
        assert "device" in error and "64" in error

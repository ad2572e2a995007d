"""End-to-end: the web page and the API docs in headless Chromium with the network off, driven
over the W3C WebDriver protocol.

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
         "--disable-dev-shm-usage", "--window-size=1400,900",
         # the network is off: names do not resolve and every host but loopback goes to a dead
         # proxy, so a page that needs anything from outside 127.0.0.1 shows it
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
         "--proxy-server=http://127.0.0.1:9"]
CDN_ASSET = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"


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
            found = self.find_all(css)  # not there yet is not a failure until the timeout
            text = self.text(found[0]) if found else ""
            if needle in text:
                return text
            time.sleep(0.2)
        raise AssertionError(f"{css!r} never showed {needle!r}; last text: {text!r}")

    def run_async(self, script: str):
        """Run ``script`` (it calls ``done(value)``) in the page; returns the value."""
        return self.call("POST", "/execute/async", {
            "script": f"const done = arguments[arguments.length - 1]; {script}", "args": []})

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
    with served(model_dir) as server:
        browser.go(server.url)
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

        device = browser.find("#device")  # this model has no device input: nothing to pick
        assert browser.attribute(device, "disabled") == "true"
        assert [browser.text(o) for o in browser.find_all("#device option")] == ["(none)"]

        browser.type("#user", "u" * 129)  # the API allows 128 characters: the page shows the 422
        browser.click("#go")
        error = browser.wait_text("#error", "error 422")
        assert "user_id" in error and "128" in error


def test_page_offers_the_devices_the_model_knows(browser, device_model_dir):
    with served(device_model_dir) as server:
        browser.go(server.url)
        browser.wait_text("#model", "model v1")
        options = [browser.attribute(o, "value") for o in browser.find_all("#device option")]
        assert sorted(options) == ["", "android", "ios"]
        browser.click("#device option[value=ios]")
        browser.type("#k", "4")
        browser.click("#go")
        browser.wait_text("#status", "candidates for")
        assert len(browser.find_all("#results tbody tr.item")) == 4
        assert browser.text(browser.find("#error")) == ""


def test_api_docs_render_with_the_network_off(browser, model_dir):
    with served(model_dir) as server:
        browser.go(f"{server.url}/docs")
        assert browser.wait_text(".swagger-ui .info .title", "watchnext", timeout=60)
        wait_until(lambda: len(browser.find_all(".opblock")) >= 8, 30, "operations")
        paths = {browser.text(p) for p in browser.find_all(".opblock-summary-path")}
        assert {"/v1/watch-next", "/v1/score", "/admin/reload"} <= paths
        loaded = browser.run_async(
            "done(performance.getEntriesByType('resource').map((e) => e.name));")
        assert loaded and all(u.startswith(server.url) for u in loaded), loaded
        outside = browser.run_async(f"fetch({CDN_ASSET!r}).then(() => done('fetched'), "
                                    "() => done('failed'));")
        assert outside == "failed"  # the CDN copy the old page used is out of reach here

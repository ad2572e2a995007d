"""Headless Chromium over the W3C WebDriver protocol, for the browser tests of every package.

Chromium and chromedriver come from Debian (``scripts/setup-browser``). A test is skipped only
when Chromium is absent; Chromium without chromedriver is a broken setup and fails.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                        else None)
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


class Browser:
    """The few WebDriver commands the test needs."""

    def __init__(self, driver_url: str, profile: Path, flags: list[str]):
        self.http = httpx.Client(base_url=driver_url, timeout=60)
        options = {"binary": CHROMIUM, "args": [*FLAGS, *flags, f"--user-data-dir={profile}"]}
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

    def run(self, script: str):
        """Run ``script`` (it returns a value) in the page; returns the value."""
        return self.call("POST", "/execute/sync", {"script": script, "args": []})

    def run_async(self, script: str):
        """Run ``script`` (it calls ``done(value)``) in the page; returns the value."""
        return self.call("POST", "/execute/async", {
            "script": f"const done = arguments[arguments.length - 1]; {script}", "args": []})

    def close(self) -> None:
        self.http.delete(self.session)
        self.http.close()


@contextlib.contextmanager
def chromium(profile: Path, flags: list[str] = ()) -> Iterator[Browser]:
    """A chromedriver process and one browser session, closed afterwards."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (scripts/setup-browser installs it)")
    driver = shutil.which("chromedriver")
    assert driver, "Chromium is installed but chromedriver is not: run scripts/setup-browser"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/status").json()["value"]["ready"]:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        session = Browser(url, profile, list(flags))
        yield session
        session.close()
    finally:
        process.terminate()
        process.wait(20)

"""End-to-end: the web page and the API docs in headless Chromium with the network off, driven
over the W3C WebDriver protocol.

Chromium and chromedriver come from Debian (``scripts/setup-browser``). The test is skipped only
when Chromium is absent; Chromium without chromedriver is a broken setup and fails.
"""

from __future__ import annotations

import pytest

from tests.webdriver import chromium

from .live import served, wait_until

pytestmark = pytest.mark.slow

TAB = "\ue004"  # the WebDriver key code for Tab
FLAGS = ["--disable-quic", "--window-size=1400,900",
         # the network is off: names do not resolve and every host but loopback goes to a dead
         # proxy, so a page that needs anything from outside 127.0.0.1 shows it
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
         "--proxy-server=http://127.0.0.1:9"]
CDN_ASSET = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "profile", FLAGS) as session:
        yield session


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
        assert sources <= {"cowatch", "embedding", "twotower", "topic", "popular"}
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

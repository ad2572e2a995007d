"""The HTML report in headless Chromium: every picture loads (WebDriver, like tests/serve).

Chromium and chromedriver come from Debian (``scripts/setup-browser``); the test is skipped only
when Chromium is absent (tests/webdriver.py).
"""

from __future__ import annotations

import pytest

from tests.webdriver import chromium
from watchnext.api import Ranker
from watchnext.evaluate import html, schema

pytestmark = pytest.mark.slow

IMAGES = "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt]);"


@pytest.fixture
def browser(tmp_path):
    """``open(path) -> [(complete, naturalWidth, alt)]`` for the page's images."""
    with chromium(tmp_path / "profile", ["--allow-file-access-from-files"]) as session:
        def open_page(path):
            session.go(path.resolve().as_uri())
            return session.run(IMAGES)

        yield open_page


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

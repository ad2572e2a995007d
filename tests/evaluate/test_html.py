import base64
import struct

import pytest

from watchnext.api import Ranker
from watchnext.evaluate import html, schema


@pytest.fixture(scope="module")
def report():
    from tests.conftest import config_from_dict, make_impressions, small_config_dict

    data = make_impressions(1500, seed=4)
    ranker = Ranker(config_from_dict(small_config_dict())).fit(data, data)
    evaluation = schema.evaluation(ranker.evaluate(data), "test split")
    return schema.Report("train", {"m": ranker.model_report({"test": evaluation}, 1.0)})


def _size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_every_picture_is_drawn(report):
    pictures = html.figures(report)
    assert list(pictures) == ["training", "metrics", "experts", "bias"]
    for _, data in pictures.values():
        width, height = _size(data)
        assert width > 200 and height > 100


def test_pictures_need_what_they_show(report):
    model = report.models["m"]
    bare = schema.ModelReport(name="m", kind=model.kind, tasks=model.tasks, devices=[],
                              cost=model.cost, learned_bias={})
    assert html.figures(schema.Report("inspect", {"m": bare})) == {}


def test_page_embeds_the_pictures_and_the_tables(report, tmp_path):
    path = html.write_html(tmp_path / "r.html", report, png_dir=tmp_path / "png")
    page = path.read_text()
    uris = page.split('src="data:image/png;base64,')[1:]
    assert len(uris) == 4
    assert base64.b64decode(uris[0].split('"')[0])[:4] == b"\x89PNG"
    assert "with position" in page and "training history (kept epoch" in page
    assert {p.name for p in (tmp_path / "png").iterdir()} == {
        "training.png", "metrics.png", "experts.png", "bias.png"}


def test_bias_curves_key_positions_by_themselves():
    bias = {"click": {"curves": {"phone": {"1": -1.0, "2": -1.5}, "tv": {"1": -0.9, "2": -1.2}},
                      "serving": {"phone": 0.5, "tv": 0.4}}}
    assert html.bias_curves(bias) == {"click": {"phone": {1: -1.0, 2: -1.5}, "tv": {1: -0.9, 2: -1.2}}}
    assert html.bias_curves({}) == {}

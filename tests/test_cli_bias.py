"""``watchnext bias`` end to end: piped output, JSON, plot, the tower check and bad input."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from tests.conftest import make_impressions
from tests.test_cli import _write_run
from watchnext.cli import app

runner = CliRunner()
FLAGS = ["--click", "is_click", "--item", "video_id", "--device", "device",
         "--request", "request_id", "--randomised", "all", "--bootstrap", "30"]


def _log(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(make_impressions(3000, seed=5), path)  # slots drawn at random: a random log
    return path


def test_piped_output_is_a_full_markdown_table_with_json_and_plot(tmp_path):
    result = runner.invoke(app, ["bias", str(_log(tmp_path)), *FLAGS, "--out",
                                 str(tmp_path / "audit"), "--json", str(tmp_path / "a.json")])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert "| device | position | rows | clicks | CTR [95%] |" in result.output
    assert "| phone | 5 |" in result.output
    assert "randomised, phone: position effect detected" in result.output  # 0.4 logit per slot
    raw = json.loads((tmp_path / "a.json").read_text())
    assert set(raw["estimators"]) == {"randomised", "fixed_effects", "pbm"}
    assert set(raw["estimators"]["fixed_effects"]) == {"phone", "tablet", "tv"}
    assert set(raw["estimators"]["randomised"]["tv"]["positions"]["3"]) >= {
        "value", "low", "high", "rows", "clicks", "click_rate"}
    assert json.loads((tmp_path / "audit" / "bias_audit.json").read_text()) == raw
    assert (tmp_path / "audit" / "bias_audit.png").read_bytes()[:4] == b"\x89PNG"


def test_model_adds_the_tower_curve_from_its_config(tmp_path):
    config = _write_run(tmp_path)
    assert runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"),
                               "--quiet"]).exit_code == 0
    result = runner.invoke(app, ["bias", str(_log(tmp_path)), "--model",
                                 str(tmp_path / "run" / "model"), "--item", "video_id",
                                 "--randomised", "all", "--bootstrap", "30", "--json",
                                 str(tmp_path / "a.json")])
    assert result.exit_code == 0, result.output
    raw = json.loads((tmp_path / "a.json").read_text())
    assert set(raw["tower"]) == {"phone", "tablet", "tv"}  # device column from the config
    assert list(raw["tower"]["tv"]) == ["1", "2", "3", "4", "5"] and raw["tower"]["tv"]["1"] == 0
    assert "tower Δlogit" in result.output and "task 'click'" in result.output
    if raw["warnings"]:
        assert f"outside the estimators' 95% intervals at {len(raw['warnings'])} " in result.output
    for w in raw["warnings"]:
        assert f"warning: {w['device']} position {w['position']}: tower" in result.output


def test_bad_input_exits_2_naming_the_file_and_column(tmp_path):
    log = _log(tmp_path)
    cases = [(["--click", "clicked"], "column 'clicked'"),
             (["--click", "is_click", "--item", "video_id", "--randomised", "policy=random"],
              "column 'policy'"),
             (["--click", "is_click", "--item", "video_id", "--randomised", "day=9"],
              "nothing randomised"),
             (["--click", "is_click", "--item", "video_id", "--position", "hour"],
              "row 1: position must be an integer >= 1")]
    for flags, message in cases:
        result = runner.invoke(app, ["bias", str(log), *flags])
        assert result.exit_code == 2, result.output
        assert str(log) in result.output and message in result.output
    once = tmp_path / "once.parquet"  # every item shown once: nothing identifies the effect
    pq.write_table(pa.table({"item_id": ["a", "b", "c"], "position": [1, 2, 3],
                             "click": [1, 0, 0]}), once)
    result = runner.invoke(app, ["bias", str(once)])
    assert result.exit_code == 2 and "no item is shown at more than one position" in result.output
    result = runner.invoke(app, ["bias", str(tmp_path / "missing.parquet")])
    assert result.exit_code == 2 and "no such file" in result.output

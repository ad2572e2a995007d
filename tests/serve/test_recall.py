"""``watchnext evaluate-retrieval`` on the tiny model directory (fitted on training days only)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from watchnext.cli import app
from watchnext.serve.recall import split_logs
from watchnext.serve.service import ServingModel

from .conftest import tiny_config

runner = CliRunner()


def test_evaluate_retrieval_on_a_held_out_day(model_dir, tmp_path):
    out = tmp_path / "recall.json"
    result = runner.invoke(app, ["evaluate-retrieval", str(model_dir), "--days", "2022-04-21",
                                 "--label", "is_follow", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = report["labels"]["is_follow"]["rows"]
    assert report["labels"]["is_follow"]["events"] == 7  # follows logged on 2022-04-21
    assert set(rows) == {"pool", "source:cowatch", "source:embedding", "source:twotower",
                         "source:popular", "popular-only", "random"}
    assert rows["pool"]["mean_size"] == ServingModel.load(model_dir).pool.max_candidates
    assert report["missing_sources"]["topic"].startswith("no 'topic' column")
    assert "recall_at_10" in rows["pool"] and "| is_follow | pool | 7 |" in result.output
    assert "where the pool's items come from" in result.output
    assert set(rows["pool"]["source_mix"]["pool"]) <= {"cowatch", "embedding", "twotower", "popular"}
    assert "…" not in result.output


def test_the_history_is_every_day_before_the_evaluated_ones():
    history, evaluation = split_logs(tiny_config(), ["2022-04-20..2022-04-21"])
    assert set(evaluation["date"].to_pylist()) == {20220420, 20220421}
    assert max(history["date"].to_pylist()) == 20220419


@pytest.mark.parametrize(("args", "message"), [
    (["--days", "2022-04-09"], "seen the evaluation days"),
    (["--days", "2022-05-01"], "selects no rows"),
    (["--days", "2022-04-21", "--label", "is_like"], "is_like"),
    (["--days", "2022-04-21", "--pool-size", "201"], "outside 1..200"),
])
def test_bad_requests_exit_2_and_say_why(model_dir, args, message):
    result = runner.invoke(app, ["evaluate-retrieval", str(model_dir), *args, "--no-rank"])
    assert result.exit_code == 2
    assert message in result.output


def test_a_missing_model_directory_exits_2(tmp_path):
    result = runner.invoke(app, ["evaluate-retrieval", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such model directory" in result.output

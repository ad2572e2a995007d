"""The README's walk-through, run as written: own Parquet log -> scores, JSON and HTML reports."""

import json
import re
import shlex
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from tests.conftest import make_impressions
from watchnext.cli import app

README = Path(__file__).parents[1] / "README.md"


def _block(marker: str, language: str) -> str:
    text = README.read_text()
    found = re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)```", text, re.S)
    assert found, f"README has no {language} block after <!-- {marker} -->"
    return found.group(1)


def test_quickstart_runs_as_written(tmp_path, monkeypatch):
    (tmp_path / "logs").mkdir()
    for split, seed in (("train", 0), ("valid", 1), ("test", 2)):
        pq.write_table(make_impressions(2000, seed=seed), tmp_path / "logs" / f"{split}.parquet")
    (tmp_path / "my_run.toml").write_text(_block("quickstart-config", "toml"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for line in _block("quickstart-commands", "bash").splitlines():
        args = shlex.split(line.split("  #")[0])
        assert args[0] == "watchnext"
        result = runner.invoke(app, args[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"
        assert "…" not in result.output

    run = tmp_path / "runs" / "my_run"
    scores = pq.read_table(run / "scores.parquet")
    assert scores.column_names == ["request_id", "user_id", "video_id", "click", "watch", "like",
                                   "score"]
    assert scores.num_rows == 2000
    for report in ("metrics.json", "eval.json"):
        data = json.loads((run / report).read_text())
        assert data["schema"] == "watchnext.report/1"
        assert data["models"]["my_run"]["evaluations"]["test"]["serving"]["click"]["auc"] > 0.5
    for page in ("report.html", "eval.html"):
        assert (run / page).read_text().count("<img") == 4

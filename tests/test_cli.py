import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.conftest import make_impressions, small_config_dict
from watchnext.cli import app

runner = CliRunner()


def _write_run(tmp_path, **changes):
    raw = small_config_dict()
    for split, seed in (("train", 0), ("valid", 1), ("test", 2)):
        pq.write_table(make_impressions(2000, seed=seed), tmp_path / f"{split}.parquet")
    raw["data"].update(train="train.parquet", valid="valid.parquet", test="test.parquet")
    raw["train"].update(max_epochs=6)
    for section, values in changes.items():
        raw[section].update(values)
    lines = [f'name = "{raw["name"]}"', "[data]", *[f"{k} = {json.dumps(v)}" for k, v in raw["data"].items()]]
    for section in ("bias", "model", "train"):
        lines += [f"[{section}]", *[f"{k} = {json.dumps(v)}" for k, v in raw[section].items()]]
    for group in ("features", "tasks"):
        for item in raw[group]:
            lines += [f"[[{group}]]", *[f"{k} = {json.dumps(v)}" for k, v in item.items()]]
    path = tmp_path / "run.toml"
    path.write_text("\n".join(lines))
    return path


def test_every_command_has_help():
    for command in ("train", "evaluate", "inspect", "demo"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_train_evaluate_inspect(tmp_path):
    config = _write_run(tmp_path)
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "click" in result.output and "multiplications" in result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["test"]["tasks"]["click"]["auc"] > 0.5
    model = tmp_path / "out" / "model"
    result = runner.invoke(app, ["evaluate", str(model), "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e.json").read_text())["rows"] == 2000
    result = runner.invoke(app, ["inspect", str(model)])
    assert result.exit_code == 0, result.output
    assert "multiplications per example" in result.output and "position bias" in result.output


def test_sequential_train_and_resume(tmp_path):
    config = _write_run(tmp_path)
    out = tmp_path / "seq"
    first = runner.invoke(app, ["train", str(config), "--out", str(out), "--sequential", "--quiet"])
    assert first.exit_code == 0, first.output
    result = runner.invoke(app, ["train", str(config), "--out", str(out), "--sequential", "--resume",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert "resuming from step-" in result.output


def test_bad_config_exits_2_naming_the_key(tmp_path):
    config = _write_run(tmp_path, model={"num_experts": 1})
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "model.num_experts" in result.output


def test_bad_data_exits_2_naming_file_and_row(tmp_path):
    config = _write_run(tmp_path)
    table = make_impressions(1500, seed=0)
    clicks = table["is_click"].to_pylist()
    clicks[42] = 7
    import pyarrow as pa

    pq.write_table(table.set_column(table.column_names.index("is_click"), "is_click", pa.array(clicks)),
                   tmp_path / "train.parquet")
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "train.parquet" in result.output and "row 42" in result.output
    assert not (tmp_path / "out" / "model").exists()


def test_evaluate_missing_model_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not a checkpoint" in result.output


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    for model in ("SharedBottom", "MMoE"):
        assert report["kuairand"][model]["tasks"]["click"]["auc"] > 0.7
    costs = [report["kuairand"][m]["cost"]["serving"] for m in ("SharedBottom", "MMoE")]
    assert abs(costs[0] - costs[1]) / costs[1] < 0.02
    assert "learned bias" in (tmp_path / "demo" / "REPORT.md").read_text()

import json
import os
import subprocess
import sys
from pathlib import Path

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
    for command in ("train", "evaluate", "inspect", "score", "report", "demo"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run shared by the command tests: (folder, train command output)."""
    tmp_path = tmp_path_factory.mktemp("run")
    config = _write_run(tmp_path)
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    return tmp_path, result.output


def test_train_writes_one_schema_report_and_html(trained):
    tmp_path, output = trained
    assert "click" in output and "multiplications" in output and "kept epoch" in output
    assert "…" not in output  # CliRunner is not a terminal: Markdown tables, nothing cut
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["schema"] == "watchnext.report/1" and metrics["command"] == "train"
    model = metrics["models"]["synthetic"]
    test = model["evaluations"]["test"]
    assert test["serving"]["click"]["auc"] > 0.5
    assert test["with_position"]["click"]["auc"] != test["serving"]["click"]["auc"]
    assert test["with_position"]["like"] == test["serving"]["like"]  # satisfaction: no tower
    training = model["training"]
    assert 1 <= training["kept_epoch"] <= training["epochs_run"] == len(training["history"])
    kept = training["history"][training["kept_epoch"] - 1]["valid_loss"]["total"]
    assert kept == min(e["valid_loss"]["total"] for e in training["history"])
    assert f"{kept:.6g}" in output  # the table shows losses to 6 significant digits
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<img src=\"data:image/png;base64,") == 4


def test_evaluate_json_beside_html_and_to_stdout(trained):
    tmp_path, _ = trained
    model = tmp_path / "out" / "model"
    result = runner.invoke(app, ["evaluate", str(model), "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "with position" in result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["models"]["synthetic"]["evaluations"]["test"]["rows"] == 2000
    assert "<img" in (tmp_path / "e.html").read_text()
    printed = runner.invoke(app, ["evaluate", str(model), "--json", "-"])
    assert printed.exit_code == 0
    assert json.loads(printed.stdout) == report  # stdout holds the JSON and nothing else


def test_inspect_needs_no_data(trained, tmp_path):
    run, _ = trained
    model = tmp_path / "run" / "model"  # a copy whose config's data files do not exist
    import shutil

    shutil.copytree(run / "out" / "model", model)
    shutil.copy(run / "out" / "metrics.json", tmp_path / "run" / "metrics.json")
    result = runner.invoke(app, ["inspect", str(model), "--json", str(tmp_path / "i.json")])
    assert result.exit_code == 0, result.output
    assert "multiplications per example" in result.output and "position bias" in result.output
    assert "…" not in result.output
    report = json.loads((tmp_path / "i.json").read_text())
    inspected = report["models"]["synthetic"]
    assert report["command"] == "inspect" and inspected["evaluations"] == {}
    assert set(inspected["learned_bias"]) == {"click", "watch"}
    assert inspected["training"]["kept_epoch"] >= 1  # from metrics.json beside the model
    assert inspected["training"]["source"] == str(tmp_path / "run" / "metrics.json")
    for value in inspected["learned_bias"]["click"]["curves"]["tv"].values():
        assert f"{value:+.3f}" in result.output  # every cell in full


def test_inspect_and_evaluate_of_a_stream_run_read_the_run_s_metrics(tmp_path):
    """A train-stream run keeps metrics.json in the run folder, not beside its step-N
    checkpoints: the history comes from there, cut to the days the checkpoint had finished."""
    from tests.streamdata import stream_config, write_days
    from watchnext.train.loop import LoopOptions
    from watchnext.train.streaming import train_stream

    files = write_days(tmp_path / "data", days=2, files_per_day=1, rows_per_file=320)
    run = tmp_path / "run"
    train_stream(stream_config(batch_size=64), tmp_path / "data", run, LoopOptions(keep=5))
    first_day = run / "checkpoints" / "step-0000000005"  # 5 steps a day: the end of day one
    result = runner.invoke(app, ["inspect", str(first_day), "--json", str(tmp_path / "i.json")])
    assert result.exit_code == 0, result.output
    training = json.loads((tmp_path / "i.json").read_text())["models"]["stream-test"]["training"]
    assert [e["chunk"] for e in training["history"]] == ["2024-03-01"]
    assert training["source"] == f"{run / 'metrics.json'} (1 day(s) finished by step-0000000005)"
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(files[1])])
    assert result.exit_code == 0, result.output
    assert f"training history from {run / 'metrics.json'} (2 day(s) finished by " \
           "step-0000000010)" in result.output


def test_piped_output_is_never_cut(trained):
    """A real pipe at 80 columns: the wide bias table arrives whole, as Markdown."""
    tmp_path, _ = trained
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    for command in (["inspect"], ["evaluate"]):
        done = subprocess.run([sys.executable, "-m", "watchnext.cli", *command,
                               str(tmp_path / "out" / "model")], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "…" not in done.stdout
        assert "| watch tv |" in done.stdout and "<oov>" not in done.stdout


def test_score_a_candidates_only_table(trained, tmp_path):
    run, _ = trained
    model = run / "out" / "model"
    test = pq.read_table(run / "test.parquet")
    pq.write_table(test.drop_columns(["is_click", "is_like", "watch_ms", "position", "request_id"]),
                   tmp_path / "candidates.parquet")
    out = tmp_path / "scores.parquet"
    result = runner.invoke(app, ["score", str(model), "--data", str(tmp_path / "candidates.parquet"),
                                 "--out", str(out), "--keep", "video_id", "--json",
                                 str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "serving mode" in result.output
    scores = pq.read_table(out)
    assert scores.column_names == ["user_id", "day", "video_id", "click", "watch", "like", "score"]
    assert scores["video_id"].to_pylist() == test["video_id"].to_pylist()  # row order kept
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["rows"] == 2000 and summary["exponents"] == {"click": 1, "watch": 0.5, "like": 1}

    clicks = tmp_path / "clicks.parquet"
    result = runner.invoke(app, ["score", str(model), "--data", str(tmp_path / "candidates.parquet"),
                                 "--out", str(clicks), "--exponent", "watch=0", "--exponent",
                                 "like=0"])
    assert result.exit_code == 0, result.output
    only = pq.read_table(clicks)
    assert only["score"].to_pylist() == pytest.approx(only["click"].to_pylist(), rel=1e-5)

    logged = tmp_path / "logged.parquet"
    result = runner.invoke(app, ["score", str(model), "--data", str(run / "test.parquet"),
                                 "--out", str(logged), "--with-position"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(logged)["click"].to_pylist() != scores["click"].to_pylist()


@pytest.mark.parametrize(("args", "message"), [
    (["--with-position"], "column 'position'"),
    (["--exponent", "likes=1"], "unknown task 'likes'"),
    (["--exponent", "like"], "expected TASK=NUMBER"),
    (["--keep", "nothing"], "column 'nothing'"),
])
def test_score_bad_input_exits_2(trained, tmp_path, args, message):
    run, _ = trained
    candidates = pq.read_table(run / "test.parquet").drop_columns(["position", "is_click"])
    pq.write_table(candidates, tmp_path / "c.parquet")
    result = runner.invoke(app, ["score", str(run / "out" / "model"), "--data",
                                 str(tmp_path / "c.parquet"), "--out", str(tmp_path / "s.parquet"),
                                 *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and not (tmp_path / "s.parquet").exists()


def test_report_renders_a_saved_report_and_refuses_others(trained, tmp_path):
    run, _ = trained
    result = runner.invoke(app, ["report", str(run / "out" / "metrics.json"), "--out",
                                 str(tmp_path / "r.html"), "--png-dir", str(tmp_path / "png")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "bias.png", "experts.png", "metrics.png", "training.png"]
    result = runner.invoke(app, ["report", str(run / "out" / "metrics.json"), "--out",
                                 str(tmp_path / "r.html"), "--png-dir", str(tmp_path / "one"),
                                 "--figure", "bias"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["bias.png"]
    result = runner.invoke(app, ["report", str(run / "out" / "metrics.json"), "--out",
                                 str(tmp_path / "r.html"), "--figure", "curves"])
    assert result.exit_code == 2 and "no picture called 'curves'" in result.output
    (tmp_path / "old.json").write_text(json.dumps({"valid": {}, "test": {}}))
    result = runner.invoke(app, ["report", str(tmp_path / "old.json"), "--out",
                                 str(tmp_path / "x.html")])
    assert result.exit_code == 2 and "schema" in result.output


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
    assert "…" not in result.output
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["schema"] == "watchnext.report/1" and report["command"] == "demo"
    for model in ("SharedBottom", "MMoE"):
        assert report["models"][model]["evaluations"]["test"]["serving"]["click"]["auc"] > 0.7
        assert report["models"][model]["training"]["kept_epoch"] >= 1
    costs = [report["models"][m]["cost"]["serving"] for m in ("SharedBottom", "MMoE")]
    assert abs(costs[0] - costs[1]) / costs[1] < 0.02
    assert "learned bias" in (tmp_path / "demo" / "REPORT.md").read_text()
    assert (tmp_path / "demo" / "report.html").read_text().count("<img") == 4

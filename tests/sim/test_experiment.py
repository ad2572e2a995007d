"""The experiment harness end to end on tiny configs: outputs, repeatability, CLI."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tests.sim.conftest import CONFIGS, tiny_experiment
from watchnext.config import ConfigError
from watchnext.sim import commands
from watchnext.sim.experiment import run_experiment, with_replicates
from watchnext.sim.experiment_config import experiment_from_dict

QUIET = {"log": lambda _msg: None}


def replicated_tiny() -> dict:
    """The tiny config with an A/A arm (the model retrained with the next seed), 2 replicates."""
    raw = tiny_experiment(replicates=2)
    model = next(a for a in raw["arms"] if a["name"] == "model")
    raw["arms"].append({**model, "name": "model_retrained", "seed_offset": 1})
    return raw


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return out, run_experiment(experiment_from_dict(replicated_tiny()), out, **QUIET)


def test_arms_experiment_writes_table_json_and_plots(tiny_run):
    out, results = tiny_run
    for name in ("table.md", "results.json", "lifts.png", "bias.png", "experts.png"):
        assert (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["day=2024-01-01", "day=2024-01-02"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["control"] == "popularity"
    assert set(saved["arms"]) == {"popularity", "random", "model", "model_retrained"}
    control = results["arms"]["popularity"]["lifts"]["watch_time"]
    assert control["lift"] == 0 and not control["significant"]
    random = results["arms"]["random"]
    lift = random["lifts"]["watch_time"]
    per = [r["lifts"]["watch_time"]["lift"] for r in random["replicates"]]
    assert lift["lift"] == pytest.approx(sum(per) / 2) and list(lift["per_replicate"]) == per
    assert lift["low"] < lift["lift"] < lift["high"]
    model = results["arms"]["model"]
    assert set(model["ground_truth"]["bias"]) == {"phone", "desktop", "tablet", "tv"}
    assert 0 < model["ground_truth"]["ndcg"]["click"] <= 1
    table = (out / "table.md").read_text()
    assert "| random |" in table and "watch_time lift" in table
    assert "Watch-time lift per replicate" in table and "t-interval over 2 replicates" in table
    assert results["cpu_seconds"] > 0 and results["replicates"] == 2


def test_replicates_train_every_arm_with_their_own_seeds(tiny_run):
    """Replicate r trains with seed + 1000 r (+ the arm's offset): the A/A arm never reuses a
    control model, and the replicated lift's interval includes the training spread."""
    _, results = tiny_run
    arms = results["arms"]
    assert [r["seed"] for r in arms["model"]["replicates"]] == [3, 1003]
    assert [r["seed"] for r in arms["model_retrained"]["replicates"]] == [4, 1004]
    first, second = (r["live"]["watch_time"] for r in arms["model"]["replicates"])
    assert first != second  # another training seed is another ranker
    lift = arms["model_retrained"]["lifts"]["watch_time"]
    assert lift["training_sd"] > 0 and lift["traffic_sd"] > 0
    assert lift["high"] - lift["lift"] > 1.959 * lift["traffic_sd"]


def test_same_config_and_seed_give_the_same_table(tiny_run, tmp_path):
    out, _ = tiny_run
    run_experiment(experiment_from_dict(replicated_tiny()), tmp_path / "again", **QUIET)
    run_experiment(experiment_from_dict(replicated_tiny()), tmp_path / "seed4", seed=4, **QUIET)
    first = (out / "table.md").read_text()
    assert first == (tmp_path / "again" / "table.md").read_text()
    assert first != (tmp_path / "seed4" / "table.md").read_text()


def test_trainings_in_two_worker_processes_give_the_same_table(tiny_run, tmp_path):
    """Seeds, not scheduling, decide every draw: two workers reproduce one process exactly."""
    out, results = tiny_run
    parallel = run_experiment(experiment_from_dict(replicated_tiny()), tmp_path, jobs=2, **QUIET)
    assert (tmp_path / "table.md").read_text() == (out / "table.md").read_text()
    assert parallel["jobs"] == 2 and results["jobs"] == 1
    assert parallel["arms"]["model"]["replicates"][1]["live"] == \
        results["arms"]["model"]["replicates"][1]["live"]


def test_polarisation_seeds_in_two_worker_processes_match_one_process(tmp_path):
    raw = tiny_experiment(kind="polarisation", polarisation={"seeds": 2})
    raw["arms"] = [a for a in raw["arms"] if a["name"] == "model"]
    raw["evaluation"].pop("control")
    one = run_experiment(experiment_from_dict(raw), tmp_path / "one", **QUIET)
    two = run_experiment(experiment_from_dict(raw), tmp_path / "two", jobs=2, **QUIET)
    assert one["arms"] == two["arms"]
    assert [r["seed"] for r in two["arms"]["model"]["runs"]] == [3, 1003]


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="--jobs"):
        run_experiment(experiment_from_dict(tiny_experiment()), tmp_path, jobs=0, **QUIET)


@pytest.mark.parametrize("kind, extra, outputs", [
    ("sweep", {"sweep": {"arm": "model", "grid": {"click": [0.5, 1.0], "satisfaction": [0.0, 1.0, 4.0]}}},
     ["pareto.png"]),
    ("polarisation", {"polarisation": {"seeds": 2}}, ["polarisation.png", "experts.png"]),
    ("feedback", {"feedback": {"rounds": 2, "requests_per_round": 300, "window": 2}}, ["rounds.png"]),
])
def test_other_kinds_run_on_a_tiny_world(tmp_path, kind, extra, outputs):
    raw = tiny_experiment(kind=kind, **extra)
    if kind != "feedback":
        raw["arms"] = [a for a in raw["arms"] if a["name"] == "model"]
        raw["evaluation"].pop("control")
    results = run_experiment(experiment_from_dict(raw), tmp_path, **QUIET)
    for name in ("table.md", "results.json", *outputs):
        assert (tmp_path / name).exists(), name
    if kind == "sweep":
        points = results["points"]
        assert len(points) == 6 and sum(p["default"] for p in points) == 1
        assert any(p["pareto"] for p in points)
    if kind == "feedback":
        assert [r["round"] for r in results["rounds"]] == [1, 2]
        assert (tmp_path / "logs" / "model").is_dir()


def _cli() -> typer.Typer:
    app = typer.Typer()
    commands.register(app)
    return app


def test_cli_experiment_rejects_a_bad_config_with_the_key(tmp_path):
    bad = tmp_path / "experiment_bad.toml"
    bad.write_text('name = "bad"\nkind = "arms"\n[logging]\nepsilon = 3.0\n[[arms]]\nname = "a"\n')
    result = CliRunner().invoke(_cli(), ["experiment", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "logging.epsilon" in result.output


def test_cli_replicates_are_refused_where_one_model_is_trained(tmp_path):
    result = CliRunner().invoke(_cli(), ["experiment", "weights", "--replicates", "3",
                                         "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--replicates" in result.output
    result = CliRunner().invoke(_cli(), ["experiment", "table2", "--replicates", "0",
                                         "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--replicates" in result.output


def test_replicates_set_the_seeds_of_a_polarisation_experiment():
    raw = tiny_experiment(kind="polarisation")
    raw["arms"] = [a for a in raw["arms"] if a["name"] == "model"]
    raw["evaluation"].pop("control")
    experiment = with_replicates(experiment_from_dict(raw), 5)
    assert experiment.config.polarisation.seeds == 5


def test_cli_knows_the_ready_configs():
    assert commands.bundled("table2", "experiment_").name == "experiment_table2.toml"
    result = CliRunner().invoke(_cli(), ["experiment", "table9"])
    assert result.exit_code == 2 and "table2" in result.output


def test_cli_simulate_writes_partitioned_logs(tmp_path):
    result = CliRunner().invoke(_cli(), ["simulate", "--out", str(tmp_path), "--days", "2",
                                         "--requests", "50", "--world", str(CONFIGS / "sim_world.toml")])
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("day=*/impressions.parquet"))) == 2


def test_cli_experiment_piped_prints_the_markdown_whole(tmp_path, monkeypatch):
    """Not a terminal: the table comes out as written, never cut to ``…`` at 80 columns."""
    wide = "| arm | " + " | ".join(f"watch_time lift {i} (95% CI)" for i in range(6)) + " |"
    table = f"{wide}\n|---|{'---|' * 6}\n| random | " + " | ".join(["+1.234% [-0.5, +3.0]"] * 6) + " |\n"

    def fake_run(path, out, seed=None, log=None, replicates=None, jobs=1):
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(table)

    monkeypatch.setattr("watchnext.sim.experiment.run_experiment", fake_run)
    result = CliRunner().invoke(_cli(), ["experiment", "table1", "--out", str(tmp_path / "o")],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and table.strip() in result.output

import json
import shutil

import pyarrow.parquet as pq
import torch
import typer
from typer.testing import CliRunner

from watchnext.serve.commands import register

from .conftest import CONFIG

runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_commands_are_registered():
    result = runner.invoke(cli(), ["--help"])
    assert result.exit_code == 0
    for name in ("build-service", "recommend", "serve"):
        assert name in result.output


def test_recommend_json(model_dir, serving):
    example = serving.store.examples["users"][0]
    result = runner.invoke(cli(), ["recommend", str(model_dir), "--user", example["user_id"],
                                   "--video", example["last_video"], "--k", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["known_user"] and len(data["items"]) == 4
    assert data["items"][0]["source"] in ("cowatch", "embedding", "twotower", "topic", "popular")


def test_recommend_table_for_a_new_user(model_dir):
    result = runner.invoke(cli(), ["recommend", str(model_dir), "--user", "stranger", "--k", "3"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "new user" in result.output and "popular" in result.output


def test_recommend_answers_with_the_newest_version_that_loads(tmp_path, model_dir):
    for version in ("v1", "v2"):
        shutil.copytree(model_dir, tmp_path / version)
    (tmp_path / "v2" / "model.safetensors").write_bytes(b"not weights")
    result = runner.invoke(cli(), ["recommend", str(tmp_path), "--k", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert "note: serving v1" in result.stderr and "refused v2" in result.stderr
    assert json.loads(result.stdout)["model_version"] == "v1"


def test_recommend_refuses_a_device_the_model_does_not_know(device_model_dir):
    result = runner.invoke(cli(), ["recommend", str(device_model_dir), "--device", "tv"])
    assert result.exit_code == 2
    assert "--device 'tv'" in result.output and "android" in result.output
    ok = runner.invoke(cli(), ["recommend", str(device_model_dir), "--device", "ios", "--json"])
    assert ok.exit_code == 0, ok.output


def test_recommend_and_serve_report_a_bad_directory(tmp_path):
    for command in (["recommend", str(tmp_path)], ["serve", str(tmp_path), "--port", "0"]):
        result = runner.invoke(cli(), command)
        assert result.exit_code == 2
        assert "no model versions found" in result.output
    for command in ("serve", "recommend"):
        result = runner.invoke(cli(), [command, str(tmp_path), "--backend", "gpu"])
        assert result.exit_code == 2 and "--backend" in result.output


def test_build_service(tmp_path, logs):
    train = tmp_path / "train.parquet"
    pq.write_table(logs.slice(0, 2000), train)
    config = tmp_path / "tiny.toml"
    text = CONFIG.read_text().replace("bottom_units = [128]", "bottom_units = [16]") \
        .replace("num_experts = 8", "num_experts = 2").replace("expert_units = [64]",
                                                               "expert_units = [8]")
    config.write_text(text + '\n')
    out = tmp_path / "models" / "v1"
    result = runner.invoke(cli(), ["build-service", str(config), str(out), "--train", str(train),
                                   "--epochs", "1", "--max-candidates", "50"])
    assert result.exit_code == 0, result.output
    assert (out / "service.json").is_file() and (out / "model.safetensors").is_file()
    assert '"exported": true' in result.output
    again = runner.invoke(cli(), ["build-service", str(config), str(out), "--train", str(train)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_recommend_piped_prints_every_id_whole(model_dir, serving):
    """Not a terminal, 80 columns: a Markdown table, ids and scores never cut to ``…``."""
    example = serving.store.examples["users"][0]
    args = ["recommend", str(model_dir), "--user", example["user_id"], "--video",
            example["last_video"], "--k", "5"]
    result = runner.invoke(cli(), args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "| # | video | score |" in result.output
    listed = json.loads(runner.invoke(cli(), [*args, "--json"]).stdout)["items"]
    for item in listed:
        assert f"| {item['video_id']} | {item['score']:.4g} |" in result.output


def test_build_service_from_a_trained_checkpoint(tmp_path, logs):
    """--model: serving builds from what `watchnext train` wrote, and trains nothing."""
    from watchnext.api import Ranker
    from watchnext.serve.model_dir import load_ranker

    from .conftest import tiny_config

    train = tmp_path / "train.parquet"
    pq.write_table(logs.slice(0, 1500), train)
    ranker = Ranker(tiny_config().replace(train={"max_epochs": 1})).fit(logs.slice(0, 1500))
    checkpoint = ranker.save(tmp_path / "run" / "model")
    out = tmp_path / "models" / "v1"
    args = ["build-service", str(CONFIG), str(out), "--train", str(train), "--no-onnx",
            "--max-candidates", "30", "--model"]
    result = runner.invoke(cli(), [*args, str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "training" not in result.output
    built = load_ranker(out).model.state_dict()
    assert all(torch.equal(v, built[k]) for k, v in ranker.model.state_dict().items())
    missing = runner.invoke(cli(), [*args[:2], str(tmp_path / "v2"), *args[3:],
                                    str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "not a checkpoint" in missing.output


def test_without_the_serve_extra_each_command_names_it_and_exits_2(monkeypatch, tmp_path):
    """What a plain install sees (tests/test_plain_install.py builds one for real)."""
    import importlib.util

    from watchnext.serve import commands

    real = importlib.util.find_spec
    monkeypatch.setattr(commands.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("fastapi", "faiss") else real(name, *a))
    for args in (["serve", str(tmp_path)], ["recommend", str(tmp_path)],
                 ["build-service", str(CONFIG), str(tmp_path / "out")]):
        result = runner.invoke(cli(), args)
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert "missing: fastapi, faiss" in text and "pip install 'watchnext[serve]'" in text
    assert not (tmp_path / "out").exists()


def test_build_service_refuses_a_bad_config_with_exit_2(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[model]\nkind = "mmoe"\n')
    result = runner.invoke(cli(), ["build-service", str(config), str(tmp_path / "out")])
    assert result.exit_code == 2 and "features" in result.output
    assert not (tmp_path / "out").exists()

"""Data-parallel training under torchrun: 2 processes reach the weights of 1 process with the same
global batch, shards and seed (gloo on CPU, 127.0.0.1, a free port), whatever the step computes:
dense or sparse embedding gradients, the adversarial position head, bf16 autocast, weight
averaging."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.streamdata import write_config, write_days
from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import config_from_dict
from watchnext.train.loop import LoopOptions
from watchnext.train.streaming import train_stream

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
                 "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
                 "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
                 "-m", "watchnext.train.commands", "train-stream", *args])


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    """The served weights and, with weight averaging, the trained ones (``trained/`` names)."""
    saved = ckpt.read_checkpoint(run)
    return {**saved["weights"], **{f"trained/{k}": v for k, v in saved.get("trained", {}).items()}}


def train_one_process(raw: dict, data: Path, out: Path) -> None:
    """The reference for a 2-process run, in this process: 2 shards, so the same global batch
    (the conftest fixture restores the thread count the training sets)."""
    train_stream(config_from_dict(raw), data, out,
                 LoopOptions(shards=2, shuffle_buffer=100, checkpoint_every=5))


def _compare(tmp_path: Path, train: dict | None = None, bias: dict | None = None) -> None:
    # three files of 211 rows a day: shard boundaries fall inside files; batch 64 = 2 x 32
    write_days(tmp_path / "data", days=2, files_per_day=3, rows_per_file=211)
    raw = json.loads(write_config(tmp_path / "config.json", batch_size=64).read_text())
    raw["train"].update(train or {})
    raw["bias"].update(bias or {})
    (tmp_path / "config.json").write_text(json.dumps(raw))
    two = _torchrun(2, str(tmp_path / "config.json"), "--out", str(tmp_path / "two"), "--data",
                    str(tmp_path / "data"), "--shuffle-buffer", "100", "--checkpoint-every", "5",
                    "--keep", "10")
    assert two.returncode == 0, two.stdout + two.stderr
    train_one_process(raw, tmp_path / "data", tmp_path / "one")

    a, b = _tensors(tmp_path / "two"), _tensors(tmp_path / "one")
    assert a.keys() == b.keys()
    for name in a:
        # float32's default tolerances: summation order differs between 1 and 2 processes, and
        # the shallow tower (10x learning rate, weights of a few units) amplifies it to ~2e-6
        torch.testing.assert_close(a[name], b[name], msg=name)
    initial = ckpt.read_checkpoint(tmp_path / "two" / "checkpoints" / "step-0000000005")["weights"]
    assert not torch.equal(initial["towers.weights.0"], a["towers.weights.0"])  # it trained
    metrics = {run: json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("two", "one")}
    assert (metrics["two"]["world_size"], metrics["one"]["world_size"]) == (2, 1)
    assert metrics["two"]["shards"] == metrics["one"]["shards"] == 2
    assert [d["rows_trained"] for d in metrics["two"]["days"]] == [633, 633]
    for d2, d1 in zip(metrics["two"]["days"], metrics["one"]["days"], strict=True):
        assert d2["loss"] == pytest.approx(d1["loss"], abs=1e-6)
    assert two.stdout.count("day 2024-03-02 done") == 1  # only rank 0 logs


def test_two_processes_reach_the_weights_of_one_process_with_the_same_global_batch(tmp_path):
    _compare(tmp_path)


def test_the_adversarial_arm_trains_under_torchrun_and_matches_one_process(tmp_path):
    _compare(tmp_path, bias={"method": "adversarial", "device": ""})
    weights = ckpt.read_checkpoint(tmp_path / "two")["weights"]
    initial = ckpt.read_checkpoint(tmp_path / "two" / "checkpoints" / "step-0000000005")["weights"]
    adversary = [name for name in weights if name.startswith("adversary.")]
    assert adversary and all(not torch.equal(weights[n], initial[n]) for n in adversary)


def test_weight_averaging_under_torchrun_matches_one_process_and_resumes_on_every_rank(tmp_path):
    _compare(tmp_path, train={"weight_averaging": 0.9})
    full = _tensors(tmp_path / "two")
    assert not torch.equal(full["towers.weights.0"], full["trained/towers.weights.0"])
    # every rank restores the average: a rank that did not would fail the check that the
    # processes hold the same average at the next checkpoint, and end elsewhere
    shutil.copytree(tmp_path / "two" / "checkpoints" / "step-0000000005",
                    tmp_path / "resumed" / "checkpoints" / "step-0000000005")
    resumed = _torchrun(2, str(tmp_path / "config.json"), "--out", str(tmp_path / "resumed"),
                        "--data", str(tmp_path / "data"), "--checkpoint-every", "5", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    again = _tensors(tmp_path / "resumed")
    assert again.keys() == full.keys()
    assert [k for k in full if not torch.equal(full[k], again[k])] == []


@pytest.mark.slow
def test_sparse_embedding_gradients_all_reduce_to_the_same_weights(tmp_path):
    _compare(tmp_path, train={"sparse_embeddings": True})


@pytest.mark.slow
def test_bf16_under_torchrun_matches_one_process(tmp_path):
    _compare(tmp_path, train={"precision": "bf16"})


def test_compile_under_torchrun_is_refused_on_every_rank(tmp_path):
    write_days(tmp_path / "data", days=1, files_per_day=1, rows_per_file=64)
    raw = json.loads(write_config(tmp_path / "config.json").read_text())
    raw["train"]["compile"] = True
    (tmp_path / "config.json").write_text(json.dumps(raw))
    out = _torchrun(2, str(tmp_path / "config.json"), "--data", str(tmp_path / "data"),
                    "--out", str(tmp_path / "run"))
    assert out.returncode != 0
    for rank in (0, 1):
        assert f"[rank {rank}] error: train.compile: not supported with several processes" \
            in out.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_bad_row_in_another_rank_s_share_stops_every_rank_and_writes_nothing(tmp_path):
    import pyarrow.parquet as pq

    paths = write_days(tmp_path / "data", days=1, files_per_day=2, rows_per_file=200)
    table = pq.read_table(paths[1])
    labels = table["is_click"].to_pylist()
    labels[150] = 7
    pq.write_table(table.set_column(table.schema.get_field_index("is_click"), "is_click",
                                    __import__("pyarrow").array(labels)), paths[1])
    cfg = str(write_config(tmp_path / "config.json", batch_size=64))
    out = _torchrun(2, cfg, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"))
    assert out.returncode != 0
    for rank in (0, 1):
        assert f"[rank {rank}] error: {paths[1]}, column 'is_click', row 150: label for task " \
               "'click' is 7, expected 0 or 1" in out.stderr
    assert not (tmp_path / "run").exists()

"""Crash safety: a run killed at any moment resumes to the same weights; bad checkpoints fall back."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.streamdata import config_dict, stream_config, write_config, write_days
from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import ConfigError, config_from_dict
from watchnext.data.errors import DataError
from watchnext.train import recovery
from watchnext.train.loop import LoopOptions
from watchnext.train.streaming import train_stream

REPO = Path(__file__).resolve().parents[2]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """The served weights and, with weight averaging (then the served ones are the average),
    the trained weights the run continues from."""
    saved = ckpt.read_checkpoint(run)
    return {**saved["weights"], **{f"trained/{k}": v for k, v in saved.get("trained", {}).items()}}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ in {different}"


def _copy_checkpoint(src_run: Path, step: int, dst_run: Path) -> None:
    name = recovery.step_dir(src_run, step).name
    shutil.copytree(src_run / recovery.CHECKPOINTS / name, dst_run / recovery.CHECKPOINTS / name)


@pytest.mark.parametrize(("sparse", "averaging"), [(False, 0.0), (True, 0.0), (False, 0.9)])
def test_resuming_from_any_checkpoint_ends_with_the_same_weights(tmp_path, sparse, averaging):
    write_days(tmp_path / "data", days=2, files_per_day=2, rows_per_file=300)
    cfg = stream_config(batch_size=32).replace(train={"sparse_embeddings": sparse,
                                                      "weight_averaging": averaging})
    options = LoopOptions(checkpoint_every=4, keep=100, shuffle_buffer=100)
    full = train_stream(cfg, tmp_path / "data", tmp_path / "full", options)
    assert full.global_step == 38
    expected = _weights(tmp_path / "full")
    assert any(k.startswith("trained/") for k in expected) == bool(averaging)
    for step in (4, 12, 19, 36):  # mid-window, mid-day, a day's end, late in day two
        run = tmp_path / f"from-{step}"
        _copy_checkpoint(tmp_path / "full", step, run)
        resumed = train_stream(cfg, tmp_path / "data", run, LoopOptions(resume=True))
        assert resumed.global_step == 38
        _assert_same_weights(expected, _weights(run))
        assert [d["rows_trained"] for d in resumed.metrics["days"]] == [600, 600]
        for a, b in zip(resumed.metrics["days"], full.metrics["days"], strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-9)


def _start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def _checkpoint_at_least(step: int) -> Callable[[str], bool]:
    """A log line of a checkpoint at ``step`` or later: a resumed run may start past ``step``
    (the previous kill's delay let it run on), and then its first checkpoint is the moment."""
    def matches(line: str) -> bool:
        found = re.search(r"checkpoint step (\d+) ", line)
        return found is not None and int(found.group(1)) >= step
    return matches


def _kill_after(proc: subprocess.Popen, pattern: str | Callable[[str], bool], delay: float,
                timeout: float = 120) -> str:
    """Read the run's log until a line matches ``pattern`` (a regex or a predicate), wait
    ``delay`` s, SIGKILL it; return the log."""
    matches = pattern if callable(pattern) else re.compile(pattern).search
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if matches(line):
                time.sleep(delay)
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait()
        lines += proc.stdout.read().splitlines(keepends=True)
    finally:
        watchdog.cancel()
    return "".join(lines)


def _stream_cmd(cfg: Path, data: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "watchnext.train.commands", "train-stream", str(cfg),
            "--data", str(data), "--out", str(run), *extra]


def _big_enough_data(tmp_path: Path, rows_per_file: int = 960) -> tuple[Path, Path]:
    """Two days of data, so a kill lands mid-run: after the last kill's checkpoint the run must
    still have more steps left than the kill's delay covers (the loop runs ~250 steps/s)."""
    write_days(tmp_path / "data", days=2, files_per_day=2, rows_per_file=rows_per_file)
    return write_config(tmp_path / "config.json", batch_size=32), tmp_path / "data"


@pytest.mark.parametrize("averaging", [0.0, 0.9])
def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path, averaging):
    cfg_path, data = _big_enough_data(tmp_path)
    raw = config_dict(batch_size=32)
    raw["train"]["weight_averaging"] = averaging
    cfg_path.write_text(json.dumps(raw))
    cfg = config_from_dict(raw)
    full = train_stream(cfg, data, tmp_path / "full", LoopOptions(checkpoint_every=10))
    assert full.global_step == 120

    proc = _start(_stream_cmd(cfg_path, data, tmp_path / "killed", "--checkpoint-every", "10"))
    log = _kill_after(proc, r"checkpoint step 30 ", delay=random.uniform(0.0, 0.1))
    assert proc.returncode == -signal.SIGKILL, log
    assert "model:" not in log, "the run finished before it could be killed"
    steps = [s for s, _ in recovery.step_checkpoints(tmp_path / "killed")]
    assert steps and max(steps) < 120

    resumed = train_stream(cfg, data, tmp_path / "killed", LoopOptions(resume=True,
                                                                         checkpoint_every=10))
    assert resumed.global_step == 120
    expected = _weights(tmp_path / "full")
    assert any(k.startswith("trained/") for k in expected) == bool(averaging)
    _assert_same_weights(expected, _weights(tmp_path / "killed"))
    assert [d["rows_trained"] for d in resumed.metrics["days"]] == [1920, 1920]


@pytest.mark.slow
def test_repeated_sigkills_at_random_moments_still_end_with_the_same_weights(tmp_path):
    cfg_path, data = _big_enough_data(tmp_path, rows_per_file=2400)  # 300 steps, last kill at 98
    cfg = stream_config(batch_size=32)
    train_stream(cfg, data, tmp_path / "full", LoopOptions(checkpoint_every=7, keep=2))
    run = tmp_path / "killed"
    rng = random.Random(1)
    for target in (14, 35, 63, 98):
        proc = _start(_stream_cmd(cfg_path, data, run, "--checkpoint-every", "7", "--keep", "2",
                                  "--resume"))
        log = _kill_after(proc, _checkpoint_at_least(target), delay=rng.uniform(0.0, 0.15))
        assert proc.returncode == -signal.SIGKILL, log
        assert "model:" not in log, "the run finished before it could be killed"
    proc = _start(_stream_cmd(cfg_path, data, run, "--checkpoint-every", "7", "--keep", "2",
                              "--resume"))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    _assert_same_weights(_weights(tmp_path / "full"), _weights(run))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_corrupt_and_partial_checkpoints_are_refused_and_an_older_one_is_used(tmp_path):
    write_days(tmp_path / "data", days=1, files_per_day=2, rows_per_file=300)
    cfg = stream_config(batch_size=32)
    options = LoopOptions(checkpoint_every=4, keep=3, shuffle_buffer=100)
    full = train_stream(cfg, tmp_path / "data", tmp_path / "run", options)
    expected = _weights(tmp_path / "run")
    assert [s for s, _ in recovery.step_checkpoints(tmp_path / "run")] == [19, 16, 12]
    _flip_byte(recovery.step_dir(tmp_path / "run", 19) / "model.safetensors")
    (recovery.step_dir(tmp_path / "run", 16) / "optimizer.safetensors").unlink()
    lines = []
    resumed = train_stream(cfg, tmp_path / "data", tmp_path / "run",
                           LoopOptions(resume=True, checkpoint_every=4), log=lines.append)
    log = "\n".join(lines)
    assert re.search(r"refusing checkpoint step-0000000019: .*model\.safetensors: checksum mismatch, "
                     r"the file is corrupt or partial", log)
    assert re.search(r"refusing checkpoint step-0000000016: .*optimizer\.safetensors: missing", log)
    assert "resuming from step-0000000012 (step 12)" in log
    assert resumed.global_step == full.global_step == 19
    _assert_same_weights(expected, _weights(tmp_path / "run"))
    assert (tmp_path / "run" / recovery.CHECKPOINTS / "refused-step-0000000019").is_dir()


def test_no_verifying_checkpoint_is_a_clear_error(tmp_path):
    write_days(tmp_path / "data", days=1, files_per_day=1, rows_per_file=200)
    cfg = stream_config(batch_size=32)
    train_stream(cfg, tmp_path / "data", tmp_path / "run", LoopOptions(checkpoint_every=3, keep=2))
    for _, path in recovery.step_checkpoints(tmp_path / "run"):
        _flip_byte(path / "model.safetensors")
    with pytest.raises(ckpt.CheckpointError, match=r"no checkpoint verifies:\n  .*step-0000000007/"
                       r"model\.safetensors: checksum mismatch"):
        train_stream(cfg, tmp_path / "data", tmp_path / "run", LoopOptions(resume=True))


def test_a_fresh_run_will_not_overwrite_a_run_with_checkpoints(tmp_path):
    write_days(tmp_path / "data", days=1, files_per_day=1, rows_per_file=100)
    cfg = stream_config(batch_size=32)
    train_stream(cfg, tmp_path / "data", tmp_path / "run")
    with pytest.raises(ckpt.CheckpointError, match="already holds checkpoints: pass --resume"):
        train_stream(cfg, tmp_path / "data", tmp_path / "run")


def test_resume_keeps_the_data_order_and_the_data(tmp_path):
    write_days(tmp_path / "data", days=1, files_per_day=2, rows_per_file=300)
    cfg = stream_config(batch_size=32)
    train_stream(cfg, tmp_path / "data", tmp_path / "full",
                 LoopOptions(checkpoint_every=5, keep=100, shuffle_buffer=100))
    _copy_checkpoint(tmp_path / "full", 10, tmp_path / "run")
    with pytest.raises(ConfigError, match="shuffle_buffer: the checkpoint was trained with 100, not 50"):
        train_stream(cfg, tmp_path / "data", tmp_path / "run",
                     LoopOptions(resume=True, shuffle_buffer=50))
    with pytest.raises(ConfigError, match="model: differs from the checkpoint's config"):
        train_stream(stream_config(batch_size=32, num_experts=4), tmp_path / "data",
                     tmp_path / "run", LoopOptions(resume=True))
    write_days(tmp_path / "more", days=1, files_per_day=3, rows_per_file=300)
    shutil.copy(tmp_path / "more" / "day=2024-03-01" / "part-2.parquet",
                tmp_path / "data" / "day=2024-03-01" / "part-2.parquet")
    with pytest.raises(DataError, match="day 2024-03-01 changed since the checkpoint"):
        train_stream(cfg, tmp_path / "data", tmp_path / "run", LoopOptions(resume=True))


def _open_vocabulary_config():
    """Hashed ids and no fitted statistics: the encoder does not depend on which days were seen."""
    raw = config_dict(batch_size=32)
    for feature, buckets in zip(raw["features"][:3], (64, 64, 16), strict=True):
        feature["hash_buckets"] = buckets
    raw["features"][3]["transform"] = "log1p"
    raw["bias"] = {"position": "position", "max_position": 8}
    return config_from_dict(raw)


def test_a_new_day_trains_warm_from_the_last_checkpoint(tmp_path):
    write_days(tmp_path / "all", days=2, files_per_day=1, rows_per_file=320)
    (tmp_path / "data").mkdir()
    shutil.copytree(tmp_path / "all" / "day=2024-03-01", tmp_path / "data" / "day=2024-03-01")
    cfg = _open_vocabulary_config()
    first = train_stream(cfg, tmp_path / "data", tmp_path / "run")
    shutil.copytree(tmp_path / "all" / "day=2024-03-02", tmp_path / "data" / "day=2024-03-02")
    lines = []
    second = train_stream(cfg, tmp_path / "data", tmp_path / "run", LoopOptions(resume=True),
                          log=lines.append)
    assert (first.global_step, second.global_step) == (10, 20)
    assert [d["day"] for d in second.metrics["days"]] == ["2024-03-01", "2024-03-02"]
    assert not any(line.startswith("day 2024-03-01:") for line in lines)  # not trained again
    train_stream(cfg, tmp_path / "all", tmp_path / "both")  # both days in one run
    _assert_same_weights(_weights(tmp_path / "both"), _weights(tmp_path / "run"))


def test_only_the_last_k_step_checkpoints_are_kept(tmp_path):
    write_days(tmp_path / "data", days=1, files_per_day=1, rows_per_file=320)
    train_stream(stream_config(batch_size=32), tmp_path / "data", tmp_path / "run",
                 LoopOptions(checkpoint_every=2, keep=2))
    assert [s for s, _ in recovery.step_checkpoints(tmp_path / "run")] == [10, 8]
    assert (tmp_path / "run" / "LATEST").read_text().strip() == "checkpoints/step-0000000010"

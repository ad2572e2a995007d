"""``train.embeddings = "sharded"``: TorchRec tables sharded over torchrun processes.

Skipped without the ``sharded`` extra (torchrec, fbgemm-gpu-cpu). 2-process runs use gloo on
127.0.0.1, one thread per process.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchrec")
pytest.importorskip("fbgemm_gpu")

from tests.streamdata import config_dict, write_config, write_days  # noqa: E402
from tests.train.test_crash_resume import (  # noqa: E402
    _assert_same_weights,
    _copy_checkpoint,
    _kill_after,
    _start,
    _stream_cmd,
)
from tests.train.test_distributed import _torchrun, train_one_process  # noqa: E402
from watchnext.artifacts import checkpoint as ckpt  # noqa: E402
from watchnext.config import ConfigError, config_from_dict  # noqa: E402
from watchnext.data.encoder import FeatureEncoder  # noqa: E402
from watchnext.model.keyed import fill_initial  # noqa: E402
from watchnext.model.load import load_model  # noqa: E402
from watchnext.model.ranker import MultitaskRanker  # noqa: E402
from watchnext.train import recovery  # noqa: E402
from watchnext.train.distributed import Distributed  # noqa: E402
from watchnext.train.loop import LoopOptions  # noqa: E402
from watchnext.train.step import TrainStep  # noqa: E402
from watchnext.train.streaming import train_stream  # noqa: E402


def sharded_raw(batch_size: int = 64) -> dict:
    raw = config_dict(batch_size)
    for feature in raw["features"]:
        if feature["kind"] != "numeric":
            feature["embedding_dim"] = 4  # FBGEMM's fused tables take multiples of 4
    raw["train"]["embeddings"] = "sharded"
    return raw


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.read_checkpoint(run)["weights"]


def _predictions(run: Path, data: Path) -> torch.Tensor:
    """The saved model's per-task logits on every row of ``data``."""
    import pyarrow.parquet as pq

    loaded = load_model(run)
    table = pq.read_table(data)
    with torch.no_grad():
        return loaded.model.eval()(loaded.encoder.transform(table)).logits


def test_initial_tables_do_not_depend_on_how_they_are_cut():
    whole = torch.empty(150_000, 8)
    fill_initial(whole, seed=3, table=1, dim=8)
    parts = torch.empty(150_000, 8)
    fill_initial(parts[:70_001], seed=3, table=1, dim=8)  # a cut inside a block
    fill_initial(parts[70_001:, 4:], seed=3, table=1, dim=8, row=70_001, column=4)
    fill_initial(parts[70_001:, :4], seed=3, table=1, dim=8, row=70_001)
    assert torch.equal(whole, parts)
    assert torch.equal(whole[0], torch.zeros(8))  # MISSING
    assert whole[1:].std().item() == pytest.approx(0.05, rel=0.02)
    other = torch.empty(10, 8)
    fill_initial(other, seed=3, table=2, dim=8)
    assert not torch.equal(other[1:], whole[1:10])  # each table its own values


def test_the_exported_ranker_predicts_what_the_sharded_tables_trained(tmp_path):
    """Missing ids and padded multi-valued ids give the plain ranker's zero rows and means."""
    import pyarrow.parquet as pq

    write_days(tmp_path / "data", days=1, files_per_day=1, rows_per_file=256)
    table = pq.read_table(next((tmp_path / "data").rglob("*.parquet")))
    config = config_from_dict(sharded_raw())
    encoder = FeatureEncoder(config).fit(table)
    batch = encoder.transform(table)
    batch.categorical[::3, 0] = 0  # missing user ids
    batch.multi[::5] = 0  # rows whose tags are all missing
    batch.multi[1::5, :, 1:] = 0  # one tag only
    group = Distributed.from_env("cpu", group_alone=True)
    try:
        torch.manual_seed(0)
        model = MultitaskRanker(config, encoder, id_tables=False)
        step = TrainStep(config, model, group, encoder)
        for seed in range(3):
            step([batch.slice(0, 128), batch.slice(128, 256)], [seed, seed + 10])
        plain = step.export()
        model.eval()
        with torch.no_grad():
            sharded = step.net([batch], [0], lambda: None, lambda: None)[0].logits
            exported = plain.eval()(batch).logits
        torch.testing.assert_close(exported, sharded)
        assert not torch.equal(plain.inputs.embeddings[0].weight[1:],
                               torch.zeros_like(plain.inputs.embeddings[0].weight[1:]))
        for table in [*plain.inputs.embeddings, *plain.inputs.bags]:
            assert torch.equal(table.weight[0], torch.zeros_like(table.weight[0]))  # never trained
    finally:
        group.close()


def test_resuming_a_sharded_run_from_a_checkpoint_ends_with_the_same_weights(tmp_path):
    write_days(tmp_path / "data", days=2, files_per_day=2, rows_per_file=150)
    config = config_from_dict(sharded_raw(batch_size=32))
    options = LoopOptions(checkpoint_every=4, keep=100, shuffle_buffer=100, shards=2)
    full = train_stream(config, tmp_path / "data", tmp_path / "full", options)
    expected = _weights(tmp_path / "full")
    optimizer = ckpt.read_checkpoint(tmp_path / "full")["optimizer"]
    assert any(name.startswith("rowwise_adagrad_sum.") for name in optimizer)
    for step in (4, 12):  # mid-day one, mid-day two
        run = tmp_path / f"from-{step}"
        _copy_checkpoint(tmp_path / "full", step, run)
        resumed = train_stream(config, tmp_path / "data", run, LoopOptions(resume=True))
        assert resumed.global_step == full.global_step
        _assert_same_weights(expected, _weights(run))
    loaded = load_model(tmp_path / "full")  # the serving loader, unchanged: a plain ranker
    assert isinstance(loaded.model.inputs.embeddings[0], torch.nn.Embedding)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_sharded_run(tmp_path):
    write_days(tmp_path / "data", days=2, files_per_day=2, rows_per_file=960)
    raw = sharded_raw(batch_size=32)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    train_stream(config_from_dict(raw), tmp_path / "data", tmp_path / "full",
                 LoopOptions(checkpoint_every=10))
    cmd = _stream_cmd(tmp_path / "config.json", tmp_path / "data", tmp_path / "killed",
                      "--checkpoint-every", "10")
    proc = _start(cmd)
    log = _kill_after(proc, r"checkpoint step 30 ", delay=0.05)
    assert proc.returncode == -signal.SIGKILL, log
    steps = [s for s, _ in recovery.step_checkpoints(tmp_path / "killed")]
    assert steps and max(steps) < 120, log
    resumed = _start([*cmd, "--resume"])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resuming from step-" in out
    _assert_same_weights(_weights(tmp_path / "full"), _weights(tmp_path / "killed"))


@pytest.mark.slow
def test_two_processes_with_sharded_tables_match_one_process_and_resume_exactly(tmp_path):
    write_days(tmp_path / "data", days=2, files_per_day=3, rows_per_file=211)
    raw = sharded_raw(batch_size=64)
    cfg = write_config(tmp_path / "config.json")
    cfg.write_text(json.dumps(raw))
    args = ["--data", str(tmp_path / "data"), "--shuffle-buffer", "100", "--checkpoint-every", "5",
            "--keep", "10"]
    two = _torchrun(2, str(cfg), "--out", str(tmp_path / "two"), *args)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "user_id -> rank 0; video_id -> rank 1" in two.stdout or \
        "user_id -> rank 1; video_id -> rank 0" in two.stdout, two.stdout  # really sharded
    # one process, the same tables unsharded (all on rank 0), 2 shards: the same batches
    train_one_process(raw, tmp_path / "data", tmp_path / "one")
    a, b = _weights(tmp_path / "two"), _weights(tmp_path / "one")
    assert a.keys() == b.keys()
    # The two runs sum gradients in another order (an all-reduce); Adam divides by the root of
    # the squared gradient, so on weights whose gradient is near zero (a dead expert unit) those
    # last-bit differences grow to ~1e-4 over the run. The predictions are what must agree.
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=3e-4, msg=name)
    torch.testing.assert_close(_predictions(tmp_path / "two", tmp_path / "data"),
                               _predictions(tmp_path / "one", tmp_path / "data"),
                               rtol=1e-4, atol=1e-5)
    initial = _weights(tmp_path / "two" / "checkpoints" / "step-0000000005")
    assert not torch.equal(initial["inputs.embeddings.1.weight"], a["inputs.embeddings.1.weight"])

    # the 2-process run resumed from its step-5 checkpoint on 2 processes: the same weights
    shutil.copytree(tmp_path / "two" / "checkpoints" / "step-0000000005",
                    tmp_path / "again" / "checkpoints" / "step-0000000005")
    again = _torchrun(2, str(cfg), "--out", str(tmp_path / "again"), *args, "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    _assert_same_weights(a, _weights(tmp_path / "again"))


def test_sharded_mode_refuses_validation_during_training(tmp_path):
    write_days(tmp_path / "data", days=1, files_per_day=1, rows_per_file=64)
    valid = next((tmp_path / "data").rglob("*.parquet"))
    with pytest.raises(ConfigError, match="no validation during training"):
        train_stream(config_from_dict(sharded_raw()), tmp_path / "data", tmp_path / "run",
                     valid=valid)

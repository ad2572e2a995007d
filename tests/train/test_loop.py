"""The one training loop: in-memory fit with early stopping, day-by-day runs, the two sources,
resume, and the settings that must take effect in every mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import make_impressions
from tests.streamdata import stream_config, write_days
from watchnext.api import Ranker
from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import ConfigError
from watchnext.evaluate.metrics import auc
from watchnext.train import recovery
from watchnext.train.step import TrainStep
from watchnext.train.validation import validation_losses


def _days(table):
    return [(str(d), table.filter(pc.equal(table["day"], d))) for d in (1, 2, 3)]


def _weights(ranker):
    return {k: v.clone() for k, v in ranker.model.state_dict().items()}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_learns_the_signal(config, impressions):
    valid = make_impressions(1000, seed=1)
    ranker = Ranker(config.replace(train={"max_epochs": 4})).fit(impressions, valid)
    preds = ranker.predict(valid)
    assert auc(valid["is_like"].to_numpy(), preds[:, 2]) > 0.7
    assert auc(valid["is_click"].to_numpy(), preds[:, 0]) > 0.65
    losses = [h["total"] for h in ranker.history[0].train]
    assert losses[-1] < losses[0]


def test_same_seed_same_weights(config, impressions):
    a = _weights(Ranker(config).fit(impressions))
    b = _weights(Ranker(config).fit(impressions))
    c = _weights(Ranker(config.replace(train={"seed": 1})).fit(impressions))
    assert _same(a, b)
    assert not _same(a, c)


def test_early_stopping_keeps_the_best_epoch(config, impressions):
    valid = make_impressions(500, seed=2)
    ranker = Ranker(config.replace(train={"max_epochs": 8, "patience": 0, "learning_rate": 0.05}))
    ranker.fit(impressions, valid)
    history = ranker.history[0]
    best = min(range(len(history.valid)), key=lambda i: history.valid[i]["total"])
    assert history.best_epoch == best
    assert len(history.train) == len(history.valid) < 8  # it stopped early
    final = validation_losses(ranker.model, ranker.encode(valid), config.tasks,
                              torch.device("cpu"))["total"]
    assert final == pytest.approx(history.valid[best]["total"], rel=1e-5)


def test_sequential_days_checkpoint_in_the_one_scheme(config, impressions, tmp_path):
    ranker = Ranker(config).fit_sequential(_days(impressions), tmp_path / "run", keep=2)
    steps = [s for s, _ in recovery.step_checkpoints(tmp_path / "run")]
    assert steps == [ranker.global_step, 8]  # one per day (4 steps each), last 2 kept
    assert (tmp_path / "run" / "LATEST").read_text().strip() == \
        f"checkpoints/step-{ranker.global_step:010d}"
    assert [d["day"] for d in ranker.metrics["days"]] == ["1", "2", "3"]
    loaded = Ranker.load(tmp_path / "run")
    assert loaded.global_step == ranker.global_step == 12
    assert _same(_weights(loaded), _weights(ranker))


def test_a_sequential_run_killed_mid_day_resumes_to_the_same_weights(config, impressions,
                                                                    tmp_path, monkeypatch):
    days = _days(impressions)
    full = Ranker(config).fit_sequential(days, tmp_path / "full", checkpoint_every=3)

    real_step = TrainStep.__call__
    calls = []

    def killed_at_step_7(self, parts, seeds):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt("killed")
        return real_step(self, parts, seeds)

    monkeypatch.setattr(TrainStep, "__call__", killed_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        Ranker(config).fit_sequential(days, tmp_path / "cut", checkpoint_every=3)
    monkeypatch.undo()
    assert ckpt.read_checkpoint(tmp_path / "cut")["state"]["global_step"] == 6  # mid day 2
    resumed = Ranker(config).fit_sequential(days, tmp_path / "cut", resume=True)
    assert resumed.global_step == full.global_step == 12
    assert _same(_weights(full), _weights(resumed))
    assert [d["rows_trained"] for d in resumed.metrics["days"]] == \
        [d["rows_trained"] for d in full.metrics["days"]]


def _read_days(paths: list[Path]) -> list[tuple[str, pa.Table]]:
    days: dict[str, list[pa.Table]] = {}
    for path in paths:
        days.setdefault(path.parent.name.removeprefix("day="), []).append(pq.read_table(path))
    return [(name, pa.concat_tables(tables)) for name, tables in days.items()]


def _with_absent_labels(path: Path) -> None:
    """Nulls and NaNs in both label columns: absent labels, masked out of the loss."""
    table = pq.read_table(path)
    clicks = table["is_click"].cast(pa.float64()).to_pylist()
    likes = table["is_like"].to_pylist()
    for i in range(0, len(clicks), 7):
        clicks[i] = float("nan")
    for i in range(3, len(likes), 5):
        likes[i] = None
    table = table.set_column(table.schema.get_field_index("is_click"), "is_click", pa.array(clicks))
    pq.write_table(table.set_column(table.schema.get_field_index("is_like"), "is_like",
                                    pa.array(likes, pa.int64())), path)


def test_the_same_rows_from_memory_or_from_disk_train_the_same_weights(tmp_path):
    paths = write_days(tmp_path / "data", days=2, files_per_day=2, rows_per_file=150)
    for path in paths:
        _with_absent_labels(path)
    cfg = stream_config(batch_size=32)
    options = {"shuffle_buffer": 100, "shards": 2, "checkpoint_every": 5}
    disk = Ranker(cfg).fit_stream(tmp_path / "data", tmp_path / "disk", **options)
    memory = Ranker(cfg).fit_sequential(_read_days(paths), tmp_path / "memory", **options)
    assert disk.global_step == memory.global_step == 20
    assert _same(_weights(disk), _weights(memory))
    for a, b in zip(disk.metrics["days"], memory.metrics["days"], strict=True):
        assert a["rows_trained"] == b["rows_trained"] == 300
        assert a["loss"] == b["loss"]
        assert np.isfinite(a["loss"]["total"])


def test_absent_labels_are_masked_in_memory_as_on_disk(config, impressions):
    likes = impressions["is_like"].cast(pa.float64()).to_pylist()
    for i in range(0, len(likes), 2):
        likes[i] = None if i % 4 else float("nan")
    table = impressions.set_column(impressions.column_names.index("is_like"), "is_like",
                                   pa.array(likes))
    ranker = Ranker(config).fit(table)
    assert np.isfinite(ranker.history[0].train[-1]["like"])
    labels = ranker.encode(table).labels[:, 2]
    assert torch.isnan(labels[::2]).all() and not torch.isnan(labels[1::2]).any()


def test_resume_checks_the_same_keys_in_memory_and_on_disk(config, impressions, tmp_path):
    days = _days(impressions)
    Ranker(config).fit_sequential(days[:1], tmp_path / "run")
    with pytest.raises(ConfigError, match="model: differs from the checkpoint's config"):
        Ranker(config.replace(model={"num_experts": 8})).fit_sequential(days, tmp_path / "run",
                                                                         resume=True)
    with pytest.raises(ConfigError, match="train.learning_rate: the checkpoint used 0.01, the "
                                          "config says 0.02"):
        Ranker(config.replace(train={"learning_rate": 0.02})).fit_sequential(
            days, tmp_path / "run", resume=True)
    with pytest.raises(ConfigError, match="shuffle_buffer: the checkpoint was trained with"):
        Ranker(config).fit_sequential(days, tmp_path / "run", resume=True, shuffle_buffer=7)
    with pytest.raises(ckpt.CheckpointError, match="already holds checkpoints"):
        Ranker(config).fit_sequential(days, tmp_path / "run")
    resumed = Ranker(config).fit_sequential(days, tmp_path / "run", resume=True)
    assert [d["day"] for d in resumed.metrics["days"]] == ["1", "2", "3"]


def test_early_stopping_is_refused_where_it_cannot_keep_its_best_epoch(config, impressions,
                                                                       tmp_path):
    from watchnext.train import loop
    from watchnext.train.sources import TableSource

    with pytest.raises(ConfigError, match="early stopping needs validation data"):
        loop.train(config, TableSource([("d", impressions)]), tmp_path / "run",
                   valid=impressions, early_stopping=True)

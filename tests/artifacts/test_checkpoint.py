import json
import os

import numpy as np
import pytest

from watchnext.api import Ranker
from watchnext.artifacts import checkpoint as ckpt
from watchnext.artifacts.checkpoint import CheckpointError


@pytest.fixture
def trained(config, impressions):
    return Ranker(config).fit(impressions)


def test_round_trip_gives_identical_scores(trained, impressions, tmp_path):
    trained.save(tmp_path / "m")
    loaded = Ranker.load(tmp_path / "m")
    np.testing.assert_array_equal(trained.predict_score(impressions), loaded.predict_score(impressions))
    assert loaded.config == trained.config


def test_checkpoint_holds_no_pickle(trained, tmp_path):
    path = trained.save(tmp_path / "m")
    names = sorted(os.listdir(path))
    assert names == ["config.json", "encoder.json", "model.safetensors", "state.json"]
    json.loads((path / "config.json").read_text())


def test_corrupt_weights_are_refused(trained, tmp_path):
    path = trained.save(tmp_path / "m")
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors: checksum mismatch"):
        Ranker.load(path)


def test_truncated_file_is_refused(trained, tmp_path):
    path = trained.save(tmp_path / "m")
    (path / "encoder.json").write_text("{")
    with pytest.raises(CheckpointError, match="encoder.json"):
        Ranker.load(path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        Ranker.load(tmp_path)


def test_failed_save_leaves_the_previous_checkpoint_intact(trained, impressions, tmp_path, monkeypatch):
    path = trained.save(tmp_path / "m")
    before = Ranker.load(path).predict_score(impressions)

    def crash(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "fsync_path", crash)
    with pytest.raises(OSError, match="disk full"):
        trained.save(tmp_path / "m")
    monkeypatch.undo()
    np.testing.assert_array_equal(Ranker.load(path).predict_score(impressions), before)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["m"]

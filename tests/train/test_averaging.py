"""Weight averaging (``train.weight_averaging``): the EMA formula, what the loop does with it,
and what a checkpoint holds of it (resume from a kill: tests/train/test_crash_resume.py)."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
import torch
from torch import nn

from tests.conftest import make_impressions
from watchnext.api import Ranker
from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import ConfigError
from watchnext.model.load import load_model
from watchnext.model.ranker import MultitaskRanker
from watchnext.train.averaging import WeightAverage
from watchnext.train.distributed import Distributed
from watchnext.train.step import TrainStep
from watchnext.train.validation import validation_losses


def test_the_average_follows_the_warmed_up_ema_and_leaves_the_trained_weights_alone():
    layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = WeightAverage(layer, decay=0.5)
    expected = 0.0
    for step, value in enumerate([1.0, 3.0, -2.0], start=1):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update()
        d = min(0.5, (1 + step) / (10 + step))  # 2/11, 3/12, then capped at 0.5
        expected = d * expected + (1 - d) * value
    assert average.average[0].item() == pytest.approx(expected)
    with average.applied():
        assert layer.weight.item() == pytest.approx(expected)
    assert layer.weight.item() == -2.0  # the trained weights are back
    average.apply()
    assert layer.weight.item() == pytest.approx(expected)


def test_averaging_keeps_the_training_path_and_returns_the_validated_average(config, impressions):
    valid = make_impressions(500, seed=2)
    settings = {"max_epochs": 4, "patience": 1}
    plain = Ranker(config.replace(train=settings)).fit(impressions, valid)
    averaged = Ranker(config.replace(train={**settings, "weight_averaging": 0.9})).fit(impressions, valid)
    # the average is a read-out: the steps (and so the training losses) are the same
    assert averaged.history[0].train == plain.history[0].train
    assert averaged.history[0].valid != plain.history[0].valid
    history = averaged.history[0]
    final = validation_losses(averaged.model, averaged.encode(valid), config.tasks,
                              torch.device("cpu"))["total"]
    assert final == pytest.approx(history.valid[history.best_epoch]["total"], rel=1e-5)


def test_a_decay_of_one_is_refused(config):
    with pytest.raises(ConfigError, match="train.weight_averaging: must be in"):
        config.replace(train={"weight_averaging": 1.0})


def _days(table):
    return [(str(d), table.filter(pc.equal(table["day"], d))) for d in (1, 2, 3)]


def test_a_run_folder_serves_the_average_and_keeps_the_trained_weights_to_resume(config,
                                                                                 impressions,
                                                                                 tmp_path):
    averaged = config.replace(train={"weight_averaging": 0.9})
    ranker = Ranker(averaged).fit_sequential(_days(impressions), tmp_path / "run")
    saved = ckpt.read_checkpoint(tmp_path / "run")
    returned = ranker.model.state_dict()
    assert saved["weights"].keys() == returned.keys() == saved["trained"].keys()
    assert all(torch.equal(saved["weights"][k], returned[k]) for k in returned)  # the average
    served = load_model(tmp_path / "run").model.state_dict()
    assert all(torch.equal(served[k], returned[k]) for k in returned)
    differs = [k for k in returned if not torch.equal(saved["trained"][k], returned[k])]
    assert "towers.weights.0" in differs  # the average is not the last iterate
    assert saved["state"]["average_steps"] == saved["state"]["global_step"] == ranker.global_step
    plain = Ranker(config).fit_sequential(_days(impressions), tmp_path / "plain")
    # the average is a read-out: the trained weights are those of the run without it
    trained = ckpt.read_checkpoint(tmp_path / "plain")["weights"]
    assert all(torch.equal(trained[k], saved["trained"][k]) for k in trained)
    assert "trained" not in ckpt.read_checkpoint(tmp_path / "plain")
    assert all(torch.equal(plain.model.state_dict()[k], trained[k]) for k in trained)


def test_averaging_must_match_the_checkpoint_to_resume(config, impressions, tmp_path):
    days = _days(impressions)
    Ranker(config).fit_sequential(days[:1], tmp_path / "plain")
    with pytest.raises(ConfigError, match="train.weight_averaging: the checkpoint used 0.0, the "
                                          "config says 0.9"):
        Ranker(config.replace(train={"weight_averaging": 0.9})).fit_sequential(
            days, tmp_path / "plain", resume=True)
    averaged = config.replace(train={"weight_averaging": 0.9})
    Ranker(averaged).fit_sequential(days[:1], tmp_path / "averaged")
    with pytest.raises(ConfigError, match="train.weight_averaging: the checkpoint used 0.9, the "
                                          "config says 0.0"):
        Ranker(config).fit_sequential(days, tmp_path / "averaged", resume=True)


def test_a_checkpoint_without_its_average_is_refused(config, impressions, tmp_path):
    averaged = config.replace(train={"weight_averaging": 0.9})
    ranker = Ranker(averaged).fit_sequential(_days(impressions)[:1], tmp_path / "run")
    saved = ckpt.read_checkpoint(tmp_path / "run")
    del saved["trained"]
    step = TrainStep(averaged, MultitaskRanker(averaged, ranker.encoder), Distributed())
    with pytest.raises(ckpt.CheckpointError, match="holds no weight average"):
        step.resume(saved)

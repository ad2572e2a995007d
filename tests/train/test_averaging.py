"""Weight averaging (``train.weight_averaging``): the EMA formula, and what the loop does with it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import make_impressions
from watchnext.api import Ranker
from watchnext.config import ConfigError
from watchnext.train.averaging import WeightAverage
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


def test_averaging_is_refused_where_it_cannot_be_honoured(config, impressions, tmp_path):
    with pytest.raises(ConfigError, match="train.weight_averaging"):
        config.replace(train={"weight_averaging": 1.0})
    ranker = Ranker(config.replace(train={"weight_averaging": 0.9}))
    with pytest.raises(ConfigError, match="train.weight_averaging: checkpoints"):
        ranker.fit_sequential([("1", impressions)], tmp_path / "run")

"""The early-stopping criterion: which validation loss picks the epoch to keep."""

import pytest

from watchnext.train.losses import early_stopping_loss


def test_total_criterion_is_the_weighted_total(config):
    valid = {"click": 0.3, "watch": 2.0, "like": 0.6, "total": 0.3 + 0.5 * 2.0 + 0.6}
    assert early_stopping_loss(valid, config) == pytest.approx(1.9)


def test_engagement_criterion_leaves_out_satisfaction_tasks(config):
    config = config.replace(train={"early_stopping": "engagement"})
    valid = {"click": 0.3, "watch": 2.0, "like": 0.6, "total": 1.9}
    assert early_stopping_loss(valid, config) == pytest.approx(0.3 + 0.5 * 2.0)  # watch weight 0.5
    worse_like = {**valid, "like": 5.0, "total": 6.3}
    assert early_stopping_loss(worse_like, config) == early_stopping_loss(valid, config)

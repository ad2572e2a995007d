import math

import torch

from watchnext.model.score import combined_score


def test_weighted_multiplication(config):
    preds = torch.tensor([[0.5, math.log(9.0), 0.8], [0.1, 0.0, 0.9]])
    score = combined_score(preds, config.tasks)  # exponents 1, 0.5 (exp map), 1
    expected = torch.tensor([0.5 * 9.0 ** 0.5 * 0.8, 0.1 * 1.0 * 0.9])
    torch.testing.assert_close(score, expected)


def test_exponent_override_and_negative_weights(config):
    preds = torch.tensor([[0.5, 0.0, 0.25]])
    score = combined_score(preds, config.tasks, exponents=[2.0, 0.0, -1.0])
    torch.testing.assert_close(score, torch.tensor([0.25 / 0.25]))


def test_order_follows_each_objective_when_alone(config):
    preds = torch.tensor([[0.9, 0.0, 0.1], [0.1, 0.0, 0.9]])
    clicks_only = combined_score(preds, config.tasks, [1.0, 0.0, 0.0])
    likes_only = combined_score(preds, config.tasks, [0.0, 0.0, 1.0])
    assert clicks_only.argmax() == 0 and likes_only.argmax() == 1

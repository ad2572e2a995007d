import itertools

import numpy as np
import pytest

from watchnext.evaluate.metrics import auc, grouped_auc, log_loss, ndcg_at_k, rmse


def _pairwise_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)
    assert auc(y, s) == pytest.approx(_pairwise_auc(y, s))


def test_auc_extremes_and_single_class():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(np.array([0, 0, 1, 1]), np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert np.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_grouped_auc_weights_groups_and_skips_single_class_groups():
    y = np.array([0, 1, 0, 1, 1, 1])
    s = np.array([0.1, 0.9, 0.9, 0.1, 0.5, 0.6])
    g = np.array([0, 0, 1, 1, 2, 2])
    assert grouped_auc(y, s, g) == pytest.approx(0.5)


def test_log_loss_and_rmse():
    assert log_loss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))
    assert rmse(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == pytest.approx(1.0)


def test_ndcg_perfect_and_reversed():
    rel = np.array([0, 0, 1, 0, 1, 0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    assert ndcg_at_k(rel, np.array([0.1, 0.2, 0.9, 0.1, 0.9, 0.2]), groups, 3) == 1.0
    worse = ndcg_at_k(rel, np.array([0.9, 0.2, 0.1, 0.9, 0.1, 0.2]), groups, 3)
    assert worse == pytest.approx(1 / np.log2(4))

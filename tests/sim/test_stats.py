"""Experiment statistics: paired delta-method lifts, Spearman, Wilson, exposure concentration."""

from __future__ import annotations

import numpy as np
import pytest

from watchnext.sim.stats import gini, paired_ratio_lift, ranks, spearman, top_share, wilson


def test_lift_of_identical_arms_is_zero_with_zero_width():
    x = np.random.default_rng(0).exponential(5, 1000)
    lift = paired_ratio_lift(x, np.ones_like(x), x, np.ones_like(x))
    assert lift.lift == pytest.approx(0) and lift.low == pytest.approx(0) and lift.high == pytest.approx(0)
    assert not lift.significant


def test_lift_interval_covers_the_truth_and_pairing_narrows_it():
    rng = np.random.default_rng(1)
    covered, paired_width, unpaired_width = 0, [], []
    for _ in range(200):
        base = rng.exponential(5, 2000)
        arm = base * 1.02 + rng.normal(0, 0.3, 2000)
        lift = paired_ratio_lift(arm, np.ones(2000), base, np.ones(2000))
        covered += lift.low <= 0.02 <= lift.high
        paired_width.append(lift.high - lift.low)
        shuffled = paired_ratio_lift(arm, np.ones(2000), rng.permutation(base), np.ones(2000))
        unpaired_width.append(shuffled.high - shuffled.low)
    assert 0.9 <= covered / 200 <= 0.99
    assert np.mean(paired_width) < 0.5 * np.mean(unpaired_width)


def test_ratio_lift_matches_the_ratio_of_ratios():
    rng = np.random.default_rng(2)
    x_a, y_a = rng.poisson(3, 500).astype(float), rng.poisson(10, 500).astype(float) + 1
    x_c, y_c = rng.poisson(2, 500).astype(float), rng.poisson(10, 500).astype(float) + 1
    lift = paired_ratio_lift(x_a, y_a, x_c, y_c)
    assert lift.lift == pytest.approx((x_a.sum() / y_a.sum()) / (x_c.sum() / y_c.sum()) - 1)
    assert lift.low < lift.lift < lift.high


def test_rank_statistics():
    assert ranks(np.array([3.0, 1.0, 3.0])).tolist() == [1.5, 0.0, 1.5]
    assert spearman(np.arange(10), np.arange(10) ** 3) == pytest.approx(1)
    assert spearman(np.arange(10), -np.arange(10)) == pytest.approx(-1)
    low, high = wilson(2, 10)
    assert 0.05 < low < 0.2 < high < 0.52
    assert gini(np.ones(100)) == pytest.approx(0)
    assert gini(np.r_[np.zeros(99), 1.0]) == pytest.approx(0.99)
    assert top_share(np.r_[np.ones(99), 101.0], 0.01) == pytest.approx(0.505)


def test_pareto_front_and_exponent_multipliers():
    from watchnext.config import TaskSpec
    from watchnext.sim.sweep import exponents_for, pareto_flags

    assert pareto_flags([(1, 5), (2, 4), (1.5, 3), (2, 4), (0, 6)]) == [True, True, False, True, True]
    tasks = [TaskSpec("click", "binary", "c", "engagement", exponent=1.0),
             TaskSpec("watch", "regression", "w", "engagement", exponent=2.0),
             TaskSpec("like", "binary", "l", "satisfaction", exponent=0.5)]
    assert exponents_for(tasks, {"watch": 0.5, "satisfaction": 4.0}) == [1.0, 1.0, 2.0]

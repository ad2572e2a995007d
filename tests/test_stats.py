"""The shared intervals (watchnext/stats.py): checked against values computed by hand and
against their defining properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from watchnext.stats import Z95, clustered_mean, wilson


def test_z95_is_the_normal_975_quantile():
    assert 0.5 * math.erfc(-Z95 / math.sqrt(2)) == pytest.approx(0.975, abs=1e-15)


def test_wilson_matches_the_textbook_interval_and_works_elementwise():
    # 2 of 10: centre (0.2 + z^2/20) / (1 + z^2/10), half z sqrt(0.016 + z^2/400) / (1 + z^2/10),
    # evaluated with 30-digit decimals
    low, high = wilson(2, 10)
    assert isinstance(low, float)
    assert (low, high) == pytest.approx((0.0566821514543753, 0.5098375284633583), abs=1e-12)
    lows, highs = wilson(np.array([2, 0, 10, 0]), np.array([10, 10, 10, 0]))
    assert (lows[0], highs[0]) == (low, high)
    assert 0 <= lows[1] < 1e-15 and 0 < highs[1] < 0.31  # no successes: a one-sided bound
    assert 1 - 1e-15 < highs[2] <= 1.0 and 0.69 < lows[2] < 1.0
    assert np.isnan(lows[3]) and np.isnan(highs[3])  # no trials: nothing known
    assert wilson(2, 10, z=1.0)[1] < high  # a smaller z, a narrower interval


def test_clustered_mean_counts_a_group_whose_rows_agree_about_once():
    values = np.r_[np.ones(50), np.zeros(50)]
    mean, spread_half, groups = clustered_mean(values, np.arange(100))
    assert (mean, groups) == (0.5, 100)
    # independent rows: z sqrt(g / (g - 1) * sum of squared residuals) / n = z * 0.5 / sqrt(99)
    assert spread_half == pytest.approx(Z95 * 0.5 / math.sqrt(99))
    _, lumped_half, lumped = clustered_mean(values, np.r_[np.zeros(50), np.ones(50)])
    assert lumped == 2 and lumped_half > 5 * spread_half
    assert clustered_mean([1.0, 0.0], ["a", "a"])[1] == math.inf  # one group: no spread known

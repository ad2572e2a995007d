"""Experiment statistics: paired delta-method lifts, Spearman, Wilson, exposure concentration."""

from __future__ import annotations

import numpy as np
import pytest

from watchnext.sim.stats import (
    Z95,
    Lift,
    fisher_exact_greater,
    fisher_power,
    gini,
    paired_ratio_lift,
    ranks,
    replicated_lift,
    spearman,
    t_quantile,
    top_share,
)
from watchnext.stats import wilson


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


def test_t_quantiles_match_the_tables():
    for df, expected in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452)]:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(0.95, 10) == pytest.approx(1.8125, abs=1e-4)
    assert t_quantile(0.975, 100_000) == pytest.approx(Z95, abs=1e-4)
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)


def _lift(value: float, sd: float = 0.0) -> Lift:
    return Lift(10.0, 10.0 * (1 + value), value, value - Z95 * sd, value + Z95 * sd)


def test_replicated_lift_is_the_paired_t_interval_without_traffic_noise():
    lifts = [_lift(v) for v in (0.01, 0.03, 0.02, 0.04, 0.00)]
    out = replicated_lift(lifts, pooled=_lift(0.02))
    sd = np.std([0.01, 0.03, 0.02, 0.04, 0.00], ddof=1)  # 0.0158
    assert out.lift == pytest.approx(0.02) and out.training_sd == pytest.approx(sd)
    assert out.high - out.lift == pytest.approx(2.776445 * sd / np.sqrt(5), rel=1e-5)
    assert out.significant and out.replicates == 5 and out.per_replicate[1] == pytest.approx(0.03)


def test_replicated_lift_adds_the_traffic_variance_and_falls_back_to_it_for_one_replicate():
    lifts = [_lift(v) for v in (0.01, 0.03, 0.02, 0.04, 0.00)]
    out = replicated_lift(lifts, pooled=_lift(0.02, sd=0.01))
    sd = np.std([0.01, 0.03, 0.02, 0.04, 0.00], ddof=1)
    assert out.traffic_sd == pytest.approx(0.01)
    # Satterthwaite: df = 4 (1 + 0.01^2 5 / sd^2)^2 = 4 (1 + 2)^2 = 36
    assert 4 * (1 + 0.01 ** 2 * 5 / sd ** 2) ** 2 == pytest.approx(36)
    assert out.high - out.lift == pytest.approx(2.028094 * np.sqrt(sd ** 2 / 5 + 0.01 ** 2), rel=1e-5)
    single = replicated_lift([_lift(0.02, 0.01)], pooled=_lift(0.02, 0.01))
    assert (single.low, single.high) == pytest.approx((0.02 - Z95 * 0.01, 0.02 + Z95 * 0.01))
    assert np.isnan(single.training_sd)


def test_replicated_interval_covers_a_known_lift_at_its_level_and_the_traffic_only_one_does_not():
    """Simulated: true lift 1%, training noise sd 2% per replicate, traffic noise sd 0.5% shared
    by every replicate (common requests). The replicate interval covers 1% ~95% of the time; the
    traffic-only interval of one replicate, as the harness had, far less often."""
    rng = np.random.default_rng(1)
    covered, naive = 0, 0
    trials, r = 4000, 4
    for _ in range(trials):
        traffic = rng.normal(0, 0.005)
        values = 0.01 + traffic + rng.normal(0, 0.02, r)
        out = replicated_lift([_lift(v, 0.005) for v in values], pooled=_lift(values.mean(), 0.005))
        covered += out.low <= 0.01 <= out.high
        naive += abs(values[0] - 0.01) <= Z95 * 0.005
    assert 0.935 <= covered / trials <= 0.965
    assert naive / trials < 0.5


def test_fisher_exact_test_and_its_power():
    assert fisher_exact_greater(3, 10, 0, 10) == pytest.approx(120 / 1140)
    assert fisher_exact_greater(0, 10, 3, 10) == pytest.approx(1.0)
    assert fisher_exact_greater(5, 5, 0, 5) == pytest.approx(1 / 252)
    # its size never exceeds alpha (the test is exact); power grows with the number of runs
    assert fisher_power(0.1, 0.1, 20) <= 0.05
    powers = [fisher_power(0.2, 0.0, n) for n in (8, 20, 40)]
    assert powers[0] < 0.1 < powers[1] < powers[2] and powers[2] > 0.9

"""Each estimator on a synthetic log whose position effect is known exactly."""

from functools import partial

import numpy as np
import pytest

from watchnext.evaluate import bias_estimators as est
from watchnext.evaluate.bias_audit import AuditLog

THETA = np.array([1.0, 0.7, 0.5, 0.4])  # examination by position (multiplicative world)
GAMMA = np.linspace(0.05, 0.4, 60)  # item attractiveness
B = np.array([0.0, -0.5, -0.9, -1.2])  # additive world: logit P = B[p] + A[item]
A = np.linspace(-2.5, 0.0, 60)


def _log(click, position, item, randomised=True) -> AuditLog:
    n = len(click)
    return AuditLog(click.astype(float), position, np.zeros(n, np.int64), ["all"], item,
                    np.arange(n) // 4, np.full(n, randomised))


def multiplicative(n: int, seed: int) -> AuditLog:
    """Uniformly random slots: P(click) = THETA[p] * GAMMA[item]."""
    rng = np.random.default_rng(seed)
    position, item = rng.integers(1, 5, n), rng.integers(0, len(GAMMA), n)
    return _log(rng.random(n) < THETA[position - 1] * GAMMA[item], position, item)


def additive_confounded(n: int, seed: int) -> AuditLog:
    """logit P = B[p] + A[item], better items logged higher (not randomised)."""
    rng = np.random.default_rng(seed)
    item = rng.integers(0, len(A), n)
    rank = np.clip(4 - item * 4 // len(A) + rng.integers(-1, 2, n), 1, 4)
    p = 1 / (1 + np.exp(-(B[rank - 1] + A[item])))
    return _log(rng.random(n) < p, rank, item, randomised=False)


def _coverage(fit, world, truth, seeds=range(20), n=4000) -> float:
    """Share of (seed, position 2..4) whose 95% interval holds the truth: about 0.95 if honest
    (the three positions share position 1's noise, so the share varies more than a binomial)."""
    hits = [fit(world(n, seed))["all"] for seed in seeds]
    return float(np.mean([e.low[p] <= truth[p - 1] <= e.high[p] for e in hits for p in (2, 3, 4)]))


def _width(fit, world, n) -> float:
    estimate = fit(world(n, 0))["all"]
    return float(np.mean([estimate.high[p] - estimate.low[p] for p in (2, 3, 4)]))


def test_randomised_recovers_the_logit_difference_and_narrows_with_n():
    mean_gamma = GAMMA.mean()
    logit = np.log(THETA * mean_gamma / (1 - THETA * mean_gamma))
    truth = logit - logit[0]  # population logit CTR(p) - logit CTR(1)
    assert _coverage(est.randomised, multiplicative, truth, seeds=range(40)) >= 0.85
    narrow, wide = (_width(est.randomised, multiplicative, n) for n in (16000, 4000))
    assert narrow < 0.6 * wide and wide < 0.7
    large = est.randomised(multiplicative(16000, 0))["all"]
    assert all(large.extra["click_rate_low"][p] <= THETA[p - 1] * mean_gamma
               <= large.extra["click_rate_high"][p] for p in range(1, 5))
    assert large.extra["p_value"][0] < 1e-6


def test_pbm_recovers_the_examination_ratio_and_narrows_with_n():
    truth = np.log(THETA / THETA[0])
    pbm = partial(est.pbm, replicates=100)
    assert _coverage(pbm, multiplicative, truth) >= 0.8
    narrow, wide = (_width(pbm, multiplicative, n) for n in (16000, 4000))
    assert narrow < 0.6 * wide and wide < 0.7


def test_fixed_effects_recovers_an_additive_curve_that_the_logging_confounds():
    truth = B - B[0]
    fixed_effects = partial(est.fixed_effects, replicates=100)
    assert _coverage(fixed_effects, additive_confounded, truth, n=8000) >= 0.8
    narrow, wide = (_width(fixed_effects, additive_confounded, n) for n in (16000, 4000))
    assert narrow < 0.6 * wide and wide < 0.7
    log = additive_confounded(8000, 0)
    everything = np.ones(len(log.click), bool)
    naive = est.randomised(AuditLog(log.click, log.position, log.device, log.device_names,
                                    log.item, log.request, everything))["all"]
    assert naive.value[4] < truth[3] - 0.5  # raw click rates mix item quality into position


def test_only_items_shown_at_several_positions_count():
    log = _log(np.array([1, 0, 1, 0, 0, 1]), np.array([1, 2, 1, 1, 2, 3]),
               np.array([0, 0, 1, 1, 2, 3]))
    assert est.repeated_items(log).tolist() == [True, True, False, False, False, False]


def test_a_cell_without_clicks_is_not_identified():
    log = multiplicative(4000, seed=4)
    click = np.where(log.position == 3, 0.0, log.click)
    for estimator in (est.fixed_effects, est.pbm):
        curve = estimator(log.with_clicks(click), replicates=20)["all"]
        assert np.isnan(curve.value[3]) and np.isnan(curve.low[3])
        assert np.isfinite(curve.value[2])


def test_intervals_are_95_percent_wilson():
    low, high = est.wilson(np.array([0.0, 5.0]), np.array([10.0, 10.0]))
    assert low[0] == pytest.approx(0.0, abs=1e-12) and high[0] == pytest.approx(0.2775, abs=1e-4)
    assert low[1] == pytest.approx(0.2366, abs=1e-4) and high[1] == pytest.approx(0.7634, abs=1e-4)


def test_chi_square_p_value():
    assert est.chi_square_p(np.array([50.0, 50.0]), np.array([1000.0, 1000.0])) == pytest.approx(1.0)
    # 2x2 table 30/70 vs 10/90: chi-square 12.5 on 1 degree of freedom, p = 4.07e-4
    assert est.chi_square_p(np.array([30.0, 10.0]), np.array([100.0, 100.0])) == pytest.approx(
        4.07e-4, rel=1e-2)

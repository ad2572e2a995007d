import numpy as np
import pytest

from watchnext.evaluate.bootstrap import interval, mean_auc, user_weights, weighted_auc
from watchnext.evaluate.metrics import auc


def test_unit_weights_give_the_plain_auc_ties_included():
    rng = np.random.default_rng(0)
    labels = rng.random(500) < 0.1
    scores = np.round(rng.random(500) + labels * 0.3, 1)  # coarse: many ties
    assert weighted_auc(labels, scores, np.ones((1, 500)))[0] == pytest.approx(auc(labels, scores))


def test_integer_weights_equal_repeating_the_rows():
    rng = np.random.default_rng(1)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.random(200), 2)
    counts = rng.integers(0, 3, 200)
    repeated = auc(np.repeat(labels, counts), np.repeat(scores, counts))
    assert weighted_auc(labels, scores, counts[None, :].astype(float))[0] == pytest.approx(repeated)


def test_a_resample_without_positives_is_nan():
    labels = np.array([1, 0, 0, 0])
    weights = np.array([[0.0, 1, 1, 1], [1, 1, 1, 1]])
    values = weighted_auc(labels, np.array([0.9, 0.1, 0.2, 0.3]), weights)
    assert np.isnan(values[0]) and values[1] == 1.0


def test_user_weights_keep_all_rows_of_a_user_together():
    users = np.array([7, 7, 7, 3, 3, 9])
    weights = user_weights(users, resamples=50, seed=2)
    assert weights.shape == (50, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 4]).all()
    assert (weights[:, [0, 3, 5]].sum(axis=1) == 3).all()  # three users drawn per resample


def test_a_paired_difference_is_narrower_than_an_unpaired_one():
    """Two noisy scorers of the same labels, compared on the same resamples: the share of the
    noise both see (which users were drawn) cancels, so the paired interval of the difference is
    narrower than one from independent resamples, and it excludes zero for the better scorer."""
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(300), 20)
    signal = rng.normal(size=6000) + rng.normal(size=300)[users]  # per-user effect
    labels = signal + rng.normal(size=6000) > 1.5
    good, worse = signal + 0.6 * rng.normal(size=6000), signal + 0.9 * rng.normal(size=6000)
    weights, other = user_weights(users, 400, seed=0), user_weights(users, 400, seed=1)
    est_good, reps_good = mean_auc(labels, [good], weights)
    est_worse, reps_worse = mean_auc(labels, [worse], weights)
    single = interval(est_good, reps_good)
    paired = interval(est_good - est_worse, reps_good - reps_worse)
    unpaired = interval(est_good - est_worse, reps_good - mean_auc(labels, [worse], other)[1])
    assert single.low < est_good < single.high
    assert paired.high - paired.low < 0.7 * (unpaired.high - unpaired.low)
    assert not paired.covers_zero and paired.low > 0


def test_mean_auc_averages_the_seeds():
    labels = np.array([1, 0, 1, 0, 0])
    a, b = np.array([0.9, 0.1, 0.8, 0.2, 0.3]), np.array([0.1, 0.9, 0.8, 0.2, 0.3])
    estimate, reps = mean_auc(labels, [a, b], np.ones((3, 5)))
    assert estimate == pytest.approx((auc(labels, a) + auc(labels, b)) / 2)
    assert np.allclose(reps, estimate)

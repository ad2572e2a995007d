"""AUC intervals by bootstrap over users, and paired differences on the same resamples.

Rows of one user are not independent (a user who follows often is positive on several rows), so
the unit resampled is the user: each resample draws as many users as there are, with
replacement, and keeps all their rows. A resample is then a weight per row (how often its user
was drawn), and the AUC of a resample is the weighted Mann-Whitney statistic

    AUC_b = sum_{i pos, j neg} w_bi w_bj ([s_i > s_j] + [s_i = s_j] / 2) / (W_b+ W_b-)

computed for all B resamples at once from one sort of the scores. Comparing two models on the
SAME resamples (a paired bootstrap) removes the share of the noise that both see — which users
happened to be in the test days — so a difference is judged against its own spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def user_weights(users: np.ndarray, resamples: int, seed: int = 0) -> np.ndarray:
    """``[B, N]`` row weights: how many times each row's user was drawn in each resample."""
    _, user_index = np.unique(np.asarray(users), return_inverse=True)
    n_users = int(user_index.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_users, size=(resamples, n_users))
    counts = np.zeros((resamples, n_users))
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1.0)
    return counts[:, user_index]


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC under each row of ``weights`` (``[B, N]``), ``[B]``; NaN where a class has no weight."""
    positive = np.asarray(labels) > 0.5
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="mergesort")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]  # groups of tied scores
    w = np.atleast_2d(weights)[:, order]
    pos = np.add.reduceat(w * positive[order], starts, axis=1)  # [B, G] weight per tie group
    neg = np.add.reduceat(w * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each group
    pairs = (pos * (below + neg / 2)).sum(axis=1)
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, pairs / total, np.nan)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float

    @property
    def covers_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def interval(estimate: float, replicates: np.ndarray, level: float = 0.95) -> Interval:
    """Percentile interval of the bootstrap ``replicates`` (NaN resamples dropped)."""
    finite = replicates[np.isfinite(replicates)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail]) if len(finite) else (np.nan, np.nan)
    return Interval(float(estimate), float(low), float(high))


def mean_auc(labels: np.ndarray, predictions: list[np.ndarray], weights: np.ndarray
             ) -> tuple[float, np.ndarray]:
    """The AUC averaged over several prediction vectors (training seeds of one model) on the
    full data, and the same average under every resample, ``[B]``."""
    full = np.ones((1, len(labels)))
    estimate = float(np.mean([weighted_auc(labels, p, full)[0] for p in predictions]))
    return estimate, np.mean([weighted_auc(labels, p, weights) for p in predictions], axis=0)

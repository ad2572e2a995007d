"""What an experiment measures: live metrics per request, lifts, and checks against the truth.

Live metrics (sampled, as an A/B test would see them), each a ratio of per-request sums:

    watch_time    minutes watched per request              (the engagement metric)
    click_rate    clicks / impressions
    mean_rating   survey rating / answered surveys          (satisfaction metrics below)
    like_rate     likes / clicks
    dismiss_rate  dismissals / clicks

Truth metrics (expected values under the world's hidden model, no sampling noise): expected watch
minutes per request, and the expected true satisfaction per click.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from watchnext.sim.stats import Lift, paired_ratio_lift, spearman
from watchnext.sim.world import Outcomes, Traffic, Truth, World

METRICS = {  # name: (numerator, denominator)
    "watch_time": ("watch", "requests"),
    "click_rate": ("clicks", "impressions"),
    "mean_rating": ("rating_sum", "rated"),
    "like_rate": ("likes", "clicks"),
    "dismiss_rate": ("dismisses", "clicks"),
}
ENGAGEMENT_METRICS = ("watch_time", "click_rate")
SATISFACTION_METRICS = ("mean_rating", "like_rate", "dismiss_rate")


def per_request(outcomes: Outcomes) -> dict[str, np.ndarray]:
    """Per-request sums ``[R]`` of everything the live metrics are built from."""
    rated = ~np.isnan(outcomes.rating)
    return {
        "requests": np.ones(outcomes.click.shape[0]),
        "impressions": (outcomes.position > 0).sum(1).astype(np.float64),
        "clicks": outcomes.click.sum(1).astype(np.float64),
        "watch": outcomes.watch.sum(1),
        "likes": outcomes.like.sum(1).astype(np.float64),
        "dismisses": outcomes.dismiss.sum(1).astype(np.float64),
        "rating_sum": np.where(rated, outcomes.rating, 0.0).sum(1),
        "rated": rated.sum(1).astype(np.float64),
    }


def summary(sums: dict[str, np.ndarray]) -> dict[str, float]:
    """Each live metric over all requests."""
    return {name: float(sums[num].sum() / max(sums[den].sum(), 1e-12))
            for name, (num, den) in METRICS.items()}


def lifts(arm: dict[str, np.ndarray], control: dict[str, np.ndarray]) -> dict[str, Lift]:
    """Every live metric's lift of ``arm`` over ``control`` on the same requests."""
    return {name: paired_ratio_lift(arm[num], arm[den], control[num], control[den])
            for name, (num, den) in METRICS.items()}


def expected(world: World, traffic: Traffic, truth: Truth, position: np.ndarray) -> dict[str, float]:
    """The truth metrics of a slate assignment: no sampling noise."""
    clicks = world.expected_exam(traffic, position) * truth.p_click
    return {
        "expected_watch_time": float((clicks * truth.expected_watch).sum(1).mean()),
        "expected_satisfaction": float((clicks * truth.satisfaction).sum() / clicks.sum()),
        "expected_click_rate": float(clicks.sum() / max((position > 0).sum(), 1)),
    }


def ndcg(scores: np.ndarray, gains: np.ndarray, k: int) -> float:
    """Mean NDCG@k over requests of the ranking by ``scores`` ``[R, C]`` with true ``gains``."""
    k = min(k, scores.shape[1])
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    dcg = (np.take_along_axis(gains, top, axis=1) * discount).sum(1)
    ideal = (-np.sort(-gains, axis=1)[:, :k] * discount).sum(1)
    keep = ideal > 0
    return float((dcg[keep] / ideal[keep]).mean()) if keep.any() else float("nan")


def truth_ndcg(truth: Truth, click_pred: np.ndarray, score: np.ndarray, k: int) -> dict[str, float]:
    """How well the serving model orders candidates by what is really true.

    ``click``: the main tower's click prediction against the true click appeal (the unbiased
    utility the shallow tower should leave behind). ``value``: the combined score against the true
    expected watch minutes of an examined candidate (appeal x expected watch).
    """
    return {"click": ndcg(click_pred, truth.p_click, k),
            "value": ndcg(score, truth.p_click * truth.expected_watch, k)}


def bias_check(world: World, learned: dict[str, dict[int, float]]) -> dict[str, dict[str, Any]]:
    """The learned bias curve per device against the true examination curve.

    ``learned[device][p]`` is the shallow tower's bias logit at position p (``LearnedBias.curves``).
    Spearman compares the orders of the learned bias and the true examination probability over
    slots 1..slots. The largest error is on a common scale: the learned bias relative to slot 1
    against log(exam(p) / exam(1)), which it equals when clicks are rare.
    """
    slots = world.config.slots
    out = {}
    for d, device in enumerate(world.config.device_names):
        if device not in learned:
            continue
        curve = np.array([learned[device][p] for p in range(1, slots + 1) if p in learned[device]])
        true = world.exam[d, 1:len(curve) + 1]
        relative_true = np.log(true / true[0])
        error = (curve - curve[0]) - relative_true
        out[device] = {
            "spearman": spearman(curve, true),
            "max_abs_error": float(np.abs(error).max()),
            "learned_relative": [round(float(v), 4) for v in curve - curve[0]],
            "true_relative": [round(float(v), 4) for v in relative_true],
        }
    return out

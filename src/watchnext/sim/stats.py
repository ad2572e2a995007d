"""Statistics for experiments: paired lifts, replicate intervals, rank correlation, exposure, tests.

Arms of an experiment serve the same requests, so a lift is estimated from paired per-request
values. For a ratio metric M = sum_i x_i / sum_i y_i (a total when y = 1), the lift of arm a over
control c is L = M_a / M_c - 1; its variance comes from the delta method on the four per-request
means (x_a, y_a, x_c, y_c) and their sample covariance, which keeps the pairing's variance
reduction.

That interval covers traffic noise only: the trained models are taken as fixed. Retraining an arm
with another seed gives another ranker, so with R replicates (every arm trained R times, replicate
r's arms compared on the same requests) ``replicated_lift`` adds the spread of the per-replicate
lifts: a two-level interval, mean lift +- t_df sqrt(s^2 / R + v_traffic), where s is the
standard deviation of the R paired lifts (training noise, which varies between replicates) and
v_traffic the delta-method variance of the lift of the replicate-pooled arms (the evaluation
requests are shared by every replicate, so their noise does not show in s). df is Satterthwaite's
(R - 1) (1 + v_traffic R / s^2)^2: R - 1 when training noise dominates, large when it is small.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from watchnext.stats import Z95


@dataclass(frozen=True)
class Lift:
    """Relative change of an arm over control with a 95% confidence interval."""

    control: float
    arm: float
    lift: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float | bool]:
        return {**asdict(self), "significant": self.significant}


def paired_ratio_lift(x_arm: np.ndarray, y_arm: np.ndarray, x_ctl: np.ndarray, y_ctl: np.ndarray
                      ) -> Lift:
    """Lift of sum(x_arm)/sum(y_arm) over sum(x_ctl)/sum(y_ctl), requests paired by index."""
    data = np.stack([x_arm, y_arm, x_ctl, y_ctl]).astype(np.float64)
    n = data.shape[1]
    m = data.mean(axis=1)
    if m[1] == 0 or m[3] == 0 or m[2] == 0:
        nan = float("nan")
        return Lift(nan, nan, nan, nan, nan)
    arm, ctl = m[0] / m[1], m[2] / m[3]
    lift = arm / ctl - 1
    a, b, c, d = m  # lift + 1 = a d / (b c)
    grad = np.array([d / (b * c), -a * d / (b * b * c), -a * d / (b * c * c), a / (b * c)])
    var = float(grad @ np.cov(data) @ grad) / n if n > 1 else float("nan")
    half = Z95 * math.sqrt(max(var, 0.0))
    return Lift(float(ctl), float(arm), float(lift), float(lift - half), float(lift + half))


@functools.lru_cache(maxsize=512)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom.

    By bisection on the CDF, integrated with Simpson's rule in u = arctan(t) (the density has a
    closed form): accurate to ~1e-9 for every df >= 1, without scipy.
    """
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf_above_half(t: float) -> float:  # P(0 < T < t), integrated over u = arctan(t)
        n = 400
        h = math.atan(t) / n
        total = 0.0
        for i in range(n + 1):
            u = i * h
            x = math.tan(u)
            f = math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df)) / math.cos(u) ** 2
            total += f * (1 if i in (0, n) else 4 if i % 2 else 2)
        return total * h / 3

    low, high = 0.0, 1.0
    while cdf_above_half(high) < p - 0.5:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf_above_half(mid) < p - 0.5 else (low, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class ReplicatedLift(Lift):
    """A lift over R replicates: the mean of the paired per-replicate lifts, with an interval
    that includes training noise (``training_sd``, the replicates' spread) and the traffic
    noise of the shared evaluation requests (``traffic_sd``)."""

    replicates: int = 1
    training_sd: float = float("nan")
    traffic_sd: float = float("nan")
    per_replicate: tuple[float, ...] = ()


def replicated_lift(lifts: list[Lift], pooled: Lift) -> ReplicatedLift:
    """Combine R paired per-replicate lifts (replicate r's arm over replicate r's control, on the
    same requests) with ``pooled``, the delta-method lift of the replicate-pooled arm over the
    pooled control on those requests, whose interval measures the traffic noise.

    Interval: mean +- t_{df, 0.975} sqrt(s^2 / R + v_traffic), df = (R - 1) (1 + v_traffic R /
    s^2)^2 (Satterthwaite; v_traffic counts as known). With one replicate there is no training
    spread to estimate and the interval is the traffic-only one (z, as ``pooled``).
    """
    values = np.array([lift.lift for lift in lifts], dtype=np.float64)
    r = len(values)
    mean = float(values.mean())
    traffic_sd = (pooled.high - pooled.low) / (2 * Z95)
    control = float(np.mean([lift.control for lift in lifts]))
    arm = float(np.mean([lift.arm for lift in lifts]))
    if r < 2 or math.isnan(mean):
        half = Z95 * traffic_sd
        training_sd = float("nan")
    else:
        training_sd = float(values.std(ddof=1))
        between = training_sd ** 2 / r
        total = between + traffic_sd ** 2
        df = (r - 1) * (total / between) ** 2 if between > 0 else math.inf
        quantile = Z95 if df > 1e4 else t_quantile(0.975, math.floor(df))
        half = quantile * math.sqrt(total)
    return ReplicatedLift(control, arm, mean, mean - half, mean + half, r, training_sd,
                          float(traffic_sd), tuple(float(v) for v in values))


def fisher_exact_greater(a: int, n_a: int, b: int, n_b: int) -> float:
    """One-sided Fisher exact test p-value that group A's rate (a of n_a) exceeds B's (b of n_b).

    P(X >= a) for X hypergeometric: a + b successes drawn into groups of n_a and n_b.
    """
    total = a + b

    def pmf(k: int) -> float:
        return math.comb(n_a, k) * math.comb(n_b, total - k) / math.comb(n_a + n_b, total)

    return min(1.0, sum(pmf(k) for k in range(a, min(n_a, total) + 1)))


def fisher_power(p_a: float, p_b: float, n: int, alpha: float = 0.05) -> float:
    """Power of the one-sided Fisher exact test at level ``alpha`` with ``n`` runs per group,
    when the true rates are ``p_a`` > ``p_b``: exact, summed over every outcome."""
    def binom(k: int, p: float) -> float:
        return math.comb(n, k) * p ** k * (1 - p) ** (n - k)

    return float(sum(binom(a, p_a) * binom(b, p_b)
                     for a in range(n + 1) for b in range(n + 1)
                     if fisher_exact_greater(a, n, b, n) <= alpha))


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks (0-based) with ties sharing their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    result = np.empty(len(x))
    result[order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks)."""
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of exposure: 0 when every item is shown equally, -> 1 when one item is."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    if x.sum() == 0:
        return 0.0
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def top_share(counts: np.ndarray, fraction: float = 0.01) -> float:
    """Share of all impressions that went to the top ``fraction`` of items."""
    x = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    k = max(1, int(round(fraction * len(x))))
    return float(x[:k].sum() / x.sum()) if x.sum() else 0.0

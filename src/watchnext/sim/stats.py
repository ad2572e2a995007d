"""Statistics for experiments: paired lifts with delta-method intervals, rank correlation, exposure.

Arms of an experiment serve the same requests, so a lift is estimated from paired per-request
values. For a ratio metric M = sum_i x_i / sum_i y_i (a total when y = 1), the lift of arm a over
control c is L = M_a / M_c - 1; its variance comes from the delta method on the four per-request
means (x_a, y_a, x_c, y_c) and their sample covariance, which keeps the pairing's variance
reduction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054


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


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    denom = 1 + Z95 ** 2 / trials
    centre = (p + Z95 ** 2 / (2 * trials)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / trials + Z95 ** 2 / (4 * trials ** 2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


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

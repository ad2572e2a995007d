"""The interval pieces every layer shares: the 95% normal quantile, Wilson's interval of a
proportion, and a mean's interval when rows come in dependent groups.

They sit at the bottom of the package (beside ``config``, importing nothing of watchnext) because
their users live in layers that may not import each other: the bias audit (``evaluate``),
retrieval's recall tables (``retrieve``) and the simulator's experiments (``sim``). One copy
means one z and one formula, so the audit, the recall tables and the experiments cannot drift
apart. Pure numpy; no torch.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95% intervals


def wilson(successes: ArrayLike, trials: ArrayLike, z: float = Z95
           ) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion (95% by default), elementwise over arrays.

    Why Wilson rather than p +- z sqrt(p (1 - p) / n): it stays inside [0, 1] and keeps its
    coverage near 0 and 1, where click rates and collapse rates live. NaN where ``trials`` is 0;
    floats for scalar inputs, arrays for arrays.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z ** 2 / n
        centre = (p + z ** 2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2)) / denom
    low = np.where(n > 0, np.maximum(0.0, centre - half), np.nan)
    high = np.where(n > 0, np.minimum(1.0, centre + half), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def clustered_mean(values: ArrayLike, groups: ArrayLike, z: float = Z95
                   ) -> tuple[float, float, int]:
    """(mean, half-width of its 95% interval, number of groups) of ``values`` whose rows come in
    groups that are not independent (one user's events or requests).

    The variance sums each group's residuals before squaring them (the cluster-robust sandwich
    with the g / (g - 1) correction), so a group whose rows agree counts about once, not once per
    row. With a single group nothing is known about the spread: the half-width is infinite.
    """
    x = np.asarray(values)
    n = len(x)
    mean = float(x.mean())
    _, code = np.unique(np.asarray(groups), return_inverse=True)
    residual = np.bincount(code.reshape(-1), weights=x - mean)
    g = len(residual)
    half = z * math.sqrt(g / (g - 1) * float(np.sum(residual ** 2))) / n if g > 1 else math.inf
    return mean, half, g

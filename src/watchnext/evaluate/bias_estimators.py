"""The audit's estimators of the position effect, per device, relative to position 1.

    randomised     logit CTR(p) - logit CTR(1) on randomised traffic, Woolf (delta) interval;
                   the click rates themselves with Wilson intervals
    fixed_effects  b[p, d] - b[1, d] of  logit P(click) = b[p, d] + a[item]  (a[query, item] with a
                   query column), fitted on items shown at more than one position, L2 on a only;
                   intervals from a Poisson bootstrap over requests
    pbm            log theta[p, d] / theta[1, d] of the position-based click model
                   P(click) = theta[p, d] * gamma[item] (Chuklin et al. 2015), same rows and
                   bootstrap as fixed_effects; a log-examination ratio, not a logit

Each returns ``{device: Estimate}``; a value is NaN where the data cannot identify it.
docs/bias-audit.md says what each assumes and when it is not identified.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from watchnext.evaluate.bias_audit import AuditLog, Estimate
from watchnext.stats import Z95, wilson

BARRIER = 0.01  # extra non-click weight per row under the log link (position-based model)


# ---- (a) randomised traffic ------------------------------------------------------------------

def randomised(log: AuditLog) -> dict[str, Estimate]:
    """Click rate per position on randomised rows, and its logit difference vs position 1.

    The logit difference is a log odds ratio with the Woolf (delta-method) interval; a cell with
    no clicks (or only clicks) gets 0.5 added to its four counts (Haldane-Anscombe).
    ``extra`` holds rows, clicks, rate, its Wilson interval and a chi-square p-value of "the
    click rate is the same at every position" (``p_value`` at key 0).
    """
    rnd = log.subset(log.randomised)
    positions = np.arange(1, log.max_position + 1)
    out = {}
    for d, name in enumerate(log.device_names):
        mine = rnd.device == d
        rows = np.bincount(rnd.position[mine], minlength=len(positions) + 1)[1:].astype(float)
        clicks = np.bincount(rnd.position[mine], rnd.click[mine], len(positions) + 1)[1:]
        if rows.sum() == 0:
            continue
        low, high = wilson(clicks, rows)
        value, lo, hi = {}, {}, {}
        for i, p in enumerate(positions):
            diff, se = _log_odds_ratio(clicks[i], rows[i], clicks[0], rows[0]) if p > 1 else (0, 0)
            value[p], lo[p], hi[p] = diff, diff - Z95 * se, diff + Z95 * se
        rate = np.where(rows > 0, clicks / np.maximum(rows, 1), np.nan)
        extra = {"rows": _by(positions, rows), "clicks": _by(positions, clicks),
                 "click_rate": _by(positions, rate),
                 "click_rate_low": _by(positions, low), "click_rate_high": _by(positions, high),
                 "p_value": {0: chi_square_p(clicks[rows > 0], rows[rows > 0])}}
        out[name] = Estimate(value, lo, hi, extra)
    return out


def _log_odds_ratio(c: float, n: float, c1: float, n1: float) -> tuple[float, float]:
    if n == 0 or n1 == 0:
        return float("nan"), float("nan")
    cells = np.array([c, n - c, c1, n1 - c1], dtype=float)
    if (cells == 0).any():
        cells += 0.5
    diff = np.log(cells[0] / cells[1]) - np.log(cells[2] / cells[3])
    return float(diff), float(np.sqrt((1 / cells).sum()))


def chi_square_p(clicks: np.ndarray, rows: np.ndarray) -> float:
    """P-value of Pearson's chi-square test that every position has the same click rate."""
    if len(rows) < 2 or clicks.sum() in (0, rows.sum()):
        return float("nan")
    observed = np.stack([clicks, rows - clicks])
    expected = observed.sum(1, keepdims=True) * rows / rows.sum()
    statistic = float(((observed - expected) ** 2 / expected).sum())
    dof = torch.tensor((len(rows) - 1) / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(dof, torch.tensor(statistic / 2, dtype=torch.float64)))


def _by(positions: np.ndarray, values: np.ndarray) -> dict[int, float]:
    return {int(p): float(v) for p, v in zip(positions, values, strict=True)}


# ---- rows that identify a position effect within an item -------------------------------------

def repeated_items(log: AuditLog) -> np.ndarray:
    """Rows whose (query, item) key was shown at more than one distinct position."""
    pairs = np.unique(np.stack([log.item, log.position]), axis=1)
    spread = np.bincount(pairs[0], minlength=int(log.item.max()) + 1)
    return spread[log.item] > 1


def rows_per_item(log: AuditLog) -> float:
    """Median impressions per (query, item) key among the rows that identify the effect."""
    kept = log.item[repeated_items(log)]
    return float(np.median(np.unique(kept, return_counts=True)[1])) if len(kept) else 0.0


def bootstrap(requests: np.ndarray, fit: Callable[[np.ndarray, object], tuple[np.ndarray, object]],
              replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The point fit and ``replicates`` refits with Poisson(1) weights per request (a bootstrap
    that resamples whole requests, so rows of one request stay together).

    ``fit(weights, warm)`` returns (curves ``[P, D]``, state to warm-start the next fit).
    """
    curve, state = fit(np.ones(len(requests)), None)
    rng = np.random.default_rng(seed)
    _, request = np.unique(requests, return_inverse=True)
    draws = np.empty((replicates, *curve.shape))
    for b in range(replicates):
        weights = rng.poisson(1.0, request.max() + 1)[request].astype(np.float64)
        draws[b] = fit(weights, state)[0]
    return curve, draws


def _estimates(log: AuditLog, curve: np.ndarray, draws: np.ndarray, identified: np.ndarray
               ) -> dict[str, Estimate]:
    """Per device: value relative to position 1 and percentile intervals of the bootstrap."""
    positions = range(1, curve.shape[0] + 1)
    rel, rel_draws = curve - curve[:1], draws - draws[:, :1]
    low, high = np.percentile(rel_draws, [2.5, 97.5], axis=0)
    ok = identified & identified[:1]
    rel, low, high = (np.where(ok, a, np.nan) for a in (rel, low, high))
    return {name: Estimate(*({p: float(a[p - 1, d]) for p in positions} for a in (rel, low, high)))
            for d, name in enumerate(log.device_names) if ok[0, d]}


def _cells(log: AuditLog) -> tuple[np.ndarray, int]:
    """Row index of each impression's (position, device) cell, and the number of cells."""
    return (log.position - 1) * len(log.device_names) + log.device, \
        log.max_position * len(log.device_names)


# ---- (b) fixed-effects logit and (c) position-based model: one additive fit, two links ----------

def fixed_effects(log: AuditLog, replicates: int = 200, l2: float = 0.1, seed: int = 0
                  ) -> dict[str, Estimate]:
    """``logit P(click) = b[position, device] + a[item]`` on items shown at several positions."""
    return _additive(log, "logit", replicates, l2, seed)


def pbm(log: AuditLog, replicates: int = 200, l2: float = 0.1, seed: int = 0
        ) -> dict[str, Estimate]:
    """``P(click) = theta[position, device] * gamma[item]``: ``log P = log theta + log gamma``.

    The maximum-likelihood fit of Chuklin et al.'s position-based model, by Fisher scoring
    rather than their EM: both reach the same maximum, but on open-bandit-small's rare clicks EM
    moved the curve by 0.02 logit still after 3000 iterations (docs/bias-audit.md).
    """
    return _additive(log, "log", replicates, l2, seed)


def _additive(log: AuditLog, link: str, replicates: int, l2: float, seed: int
              ) -> dict[str, Estimate]:
    rows = repeated_items(log)
    if not rows.any():
        return {}
    sub = log.subset(rows)
    _, item = np.unique(sub.item, return_inverse=True)
    cell, n_cells = _cells(sub)

    def fit(weights: np.ndarray, warm: object) -> tuple[np.ndarray, object]:
        b, a = fit_additive(cell, item, sub.click, weights, n_cells, link, l2, warm)
        return b.reshape(sub.max_position, -1), (b, a)

    curve, draws = bootstrap(sub.request, fit, replicates, seed)
    return _estimates(sub, curve, draws, _identified(sub))


def fit_additive(cell: np.ndarray, item: np.ndarray, y: np.ndarray, w: np.ndarray, n_cells: int,
                 link: str, l2: float, warm: object = None, steps: int = 100
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Penalised Bernoulli likelihood of  g(P(click)) = b[cell] + a[item]  by Fisher scoring.

    ``link`` "logit" (fixed effects) or "log" (position-based model). Minimises
    -sum w log L + l2/2 |a|^2. The Hessian's item block is diagonal, so each step solves only a
    cells x cells system (the Schur complement): cells are few (positions x devices), items many.
    A ridge of 1e-6 on b keeps a cell without any click finite (it is reported as not identified).
    """
    n_items = int(item.max()) + 1
    if warm is None:
        rate = np.clip((w * y).sum() / w.sum(), 1e-6, 1 - 1e-6)
        start = np.log(rate / (1 - rate)) if link == "logit" else np.log(rate)
        b, a = np.full(n_cells, start), np.zeros(n_items)
    else:
        b, a = (v.copy() for v in warm)
    pair = cell * n_items + item

    def loss(b: np.ndarray, a: np.ndarray) -> float:
        return _nll(b[cell] + a[item], y, w, link) + (l2 * a @ a + 1e-6 * b @ b) / 2

    current = loss(b, a)
    for _ in range(steps):
        r, h = _score(b[cell] + a[item], y, w, link)
        g_b, g_a = np.bincount(cell, r, n_cells) + 1e-6 * b, np.bincount(item, r, n_items) + l2 * a
        h_b, h_a = np.bincount(cell, h, n_cells) + 1e-6, np.bincount(item, h, n_items) + l2
        h_ba = np.bincount(pair, h, n_cells * n_items).reshape(n_cells, n_items)
        schur = np.diag(h_b) - (h_ba / h_a) @ h_ba.T
        step_b = np.linalg.solve(schur, g_b - h_ba @ (g_a / h_a))
        step_a = (g_a - h_ba.T @ step_b) / h_a
        if np.abs(step_b).max() < 1e-5:  # the curve has converged (an item without clicks
            break                        # may still creep towards its penalised limit)
        for _ in range(50):  # halve the step until the penalised loss goes down
            trial = loss(b - step_b, a - step_a)
            if trial < current:
                b, a, current = b - step_b, a - step_a, trial
                break
            step_b, step_a = step_b / 2, step_a / 2
        else:
            break  # no step lowers the loss: a minimum up to rounding
    return b, a


def _nll(eta: np.ndarray, y: np.ndarray, w: np.ndarray, link: str) -> float:
    """-sum w log L; under the log link with BARRIER extra non-clicks per row (see ``_score``)."""
    if link == "logit":
        return float(w @ (np.logaddexp(0, eta) - y * eta))
    eta = np.where(w > 0, eta, -1.0)  # rows a bootstrap replicate leaves out constrain nothing
    if eta.max() >= 0:
        return math.inf
    return float(-(w @ (y * eta + (1 - y + BARRIER) * np.log(-np.expm1(eta)))))


def _score(eta: np.ndarray, y: np.ndarray, w: np.ndarray, link: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and curvature of ``_nll`` with respect to the linear predictor.

    Under the log link an item clicked at every impression would have its maximum on the
    boundary P = 1, where no step can move; BARRIER (a hundredth of a non-click added to every
    row) keeps every maximum inside, at P <= 1 / (1 + BARRIER), and scales every click
    probability alike, so the ratios between positions do not move.
    """
    if link == "logit":
        p = 0.5 * (1 + np.tanh(0.5 * eta))
        return w * (p - y), w * p * (1 - p)
    p = np.exp(eta)
    return w * (p * (1 + BARRIER) - y) / (1 - p), w * (1 - y + BARRIER) * p / (1 - p) ** 2


def _identified(log: AuditLog) -> np.ndarray:
    """``[P, D]``: the (position, device) cells with both a click and a non-click (a cell
    without clicks has no finite maximum-likelihood effect)."""
    cell, n_cells = _cells(log)
    clicks = np.bincount(cell, log.click, n_cells)
    rows = np.bincount(cell, minlength=n_cells)
    return ((clicks > 0) & (clicks < rows)).reshape(log.max_position, -1)

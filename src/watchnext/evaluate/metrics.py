"""Ranking and regression metrics in NumPy: AUC, log loss, RMSE, grouped AUC, NDCG@k."""

from __future__ import annotations

import numpy as np


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U); NaN when only one class is present."""
    labels = np.asarray(labels) > 0.5
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def rmse(targets: np.ndarray, preds: np.ndarray) -> float:
    diff = np.asarray(targets, dtype=np.float64) - np.asarray(preds, dtype=np.float64)
    return float(np.sqrt(np.mean(diff ** 2)))


def grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """GAUC: per-group AUC weighted by group size, over groups that have both classes."""
    order = np.argsort(groups, kind="mergesort")
    groups, labels, scores = groups[order], labels[order], scores[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(groups)) + 1, len(groups)]
    total, weight = 0.0, 0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        value = auc(labels[a:b], scores[a:b])
        if not np.isnan(value):
            total += value * (b - a)
            weight += b - a
    return total / weight if weight else float("nan")


def ndcg_at_k(relevance: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k of ``scores`` within each group (request), over groups with any relevance."""
    order = np.lexsort((-scores, groups))
    groups, rel = groups[order], np.asarray(relevance, dtype=np.float64)[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(groups)) + 1, len(groups)]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        gains = rel[a:b]
        ideal = np.sort(gains)[::-1][:k]
        if ideal.sum() <= 0:
            continue
        dcg = (gains[:k] * discounts[:len(gains[:k])]).sum()
        values.append(dcg / (ideal * discounts[:len(ideal)]).sum())
    return float(np.mean(values)) if values else float("nan")

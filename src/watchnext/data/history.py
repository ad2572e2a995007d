"""Point-in-time history features: a user's or a video's past rates, from earlier days only.

Production rankers lean on such features. Each row sees only rows of strictly earlier days, so
no label of its own day (or later) leaks into its features.

    rate(key, label, day) = (sum of label over key's rows before day + m * prior(day))
                            / (count of key's rows before day + m)

where prior(day) is the global mean of the label before that day (0 on the first day).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    return pc.dictionary_encode(column.combine_chunks()).indices.to_numpy().astype(np.int64)


def _before_day(keys: np.ndarray, days: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row: count and per-label sums over the same key's rows on strictly earlier days."""
    n_days = days.max() + 1
    pair = keys * n_days + days
    uniq, inverse = np.unique(pair, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    sums = np.stack([np.bincount(inverse, weights=v) for v in values.T], axis=1)
    pair_key = uniq // n_days
    starts = np.r_[True, pair_key[1:] != pair_key[:-1]]  # uniq is sorted by key, then day
    group = np.cumsum(starts) - 1

    def exclusive_cumsum(x: np.ndarray) -> np.ndarray:
        total = np.cumsum(x, axis=0)
        first = np.flatnonzero(starts)
        return total - x - (total - x)[first][group]

    prior_counts = exclusive_cumsum(counts)
    prior_sums = exclusive_cumsum(sums)
    return prior_counts[inverse], prior_sums[inverse]


def add_history_features(table: pa.Table, keys: list[str], labels: Mapping[str, np.ndarray],
                         day_column: str, smoothing: float = 20.0) -> pa.Table:
    """Append ``{key}_hist_n`` (log1p count) and ``{key}_hist_{label}`` (smoothed rate) columns."""
    day_values = table[day_column].to_numpy()
    rank = np.unique(day_values, return_inverse=True)[1].astype(np.int64)  # sorted = chronological
    names = list(labels)
    values = np.stack([np.asarray(labels[n], dtype=np.float64) for n in names], axis=1)
    prior = _global_prior(rank, values)
    for key in keys:
        count, sums = _before_day(_codes(table[key]), rank, values)
        table = table.append_column(f"{key}_hist_n", pa.array(np.log1p(count)))
        rates = (sums + smoothing * prior) / (count[:, None] + smoothing)
        for j, name in enumerate(names):
            table = table.append_column(f"{key}_hist_{name}", pa.array(rates[:, j]))
    return table


def _global_prior(rank: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row: the mean of each label over all rows of earlier days (0 on the first day)."""
    n_days = rank.max() + 1
    counts = np.bincount(rank, minlength=n_days).astype(np.float64)
    sums = np.stack([np.bincount(rank, weights=v, minlength=n_days) for v in values.T], axis=1)
    before_n = np.cumsum(counts) - counts
    before_s = np.cumsum(sums, axis=0) - sums
    means = np.where(before_n[:, None] > 0, before_s / np.maximum(before_n, 1)[:, None], 0.0)
    return means[rank]

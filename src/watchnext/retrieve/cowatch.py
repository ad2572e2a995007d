"""Co-watch: the videos people watched right after (or just before) the one being watched.

For every user's time-ordered watches, each pair (a, b) where b comes within ``window`` watches
after a counts

    w(a -> b) += 0.5 ** (age(b) / half_life) / gap          "watched after a"
    w(b -> a) += with_weight * the same                     "watched together with a"

so recent sessions count more than old ones, and a video watched right next to ``a`` counts more
than one watched several videos later. Each video keeps its ``max_neighbors`` heaviest neighbours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from watchnext.retrieve.base import CandidateSource, Query, csr_from_pairs
from watchnext.retrieve.log import LogColumns, WatchLog


def cowatch_pairs(log: WatchLog, window: int, half_life_days: float, with_weight: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All weighted (a, b) pairs of the log, both directions, self pairs dropped."""
    decay = log.decay(half_life_days)
    src, dst, weight = [], [], []
    for gap in range(1, window + 1):
        same = log.users[:-gap] == log.users[gap:]
        a, b = log.items[:-gap][same], log.items[gap:][same]
        w = decay[gap:][same] / gap
        distinct = a != b
        a, b, w = a[distinct], b[distinct], w[distinct]
        src += [a, b]
        dst += [b, a]
        weight += [w, with_weight * w]
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(src), np.concatenate(dst), np.concatenate(weight)


class CoWatch(CandidateSource):
    """Neighbours of the query video in the time-decayed co-watch graph."""

    kind = "cowatch"

    def __init__(self, columns: LogColumns | None = None, window: int = 5,
                 half_life_days: float = 7.0, with_weight: float = 0.5, max_neighbors: int = 200):
        super().__init__(columns)
        if window < 1 or max_neighbors < 1:
            raise ValueError("CoWatch: window and max_neighbors must be >= 1")
        self.window, self.half_life_days = window, half_life_days
        self.with_weight, self.max_neighbors = with_weight, max_neighbors
        self.indptr = np.zeros(1, np.int64)
        self.neighbors = np.zeros(0, np.int64)
        self.weights = np.zeros(0, np.float32)

    def _fit(self, log: WatchLog, table: pa.Table) -> None:
        a, b, w = cowatch_pairs(log, self.window, self.half_life_days, self.with_weight)
        self.indptr, self.neighbors, self.weights = csr_from_pairs(a, b, w, log.num_items,
                                                                   self.max_neighbors)
        self.item_ids = log.item_ids

    def neighbours_of(self, item_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour codes, weights) of one item, heaviest first; empty when unknown."""
        i = self.item_index.get(item_id)
        if i is None:
            return self.neighbors[:0], self.weights[:0]
        lo, hi = self.indptr[i], self.indptr[i + 1]
        return self.neighbors[lo:hi], self.weights[lo:hi]

    def retrieve(self, query: Query, n: int) -> tuple[np.ndarray, np.ndarray]:
        items, weights = self.neighbours_of(query.video_id) if query.video_id is not None else (
            self.neighbors[:0], self.weights[:0])
        return self.allowed(items, weights, query, n)

    def params(self) -> dict[str, Any]:
        return {"window": self.window, "half_life_days": self.half_life_days,
                "with_weight": self.with_weight, "max_neighbors": self.max_neighbors}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"indptr": self.indptr, "neighbors": self.neighbors, "weights": self.weights}

    def ids(self) -> dict[str, list[str]]:
        return {"items": self.item_ids}

    def _restore(self, arrays: dict[str, np.ndarray], ids: dict[str, list[str]]) -> None:
        self.indptr, self.neighbors, self.weights = (arrays["indptr"], arrays["neighbors"],
                                                     arrays["weights"])
        self.item_ids = ids["items"]
        if len(self.indptr) != len(self.item_ids) + 1 or len(self.neighbors) != self.indptr[-1]:
            raise ValueError("co-watch arrays disagree with the item list")

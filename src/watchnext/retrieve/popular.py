"""Popular and fresh: the cold-start fallback that answers every query, even an empty one.

Popularity is the time-decayed watch count, so yesterday's hits outrank last month's. Fresh
videos (first watched within ``fresh_days`` of the newest log entry) would never win on
accumulated counts, so a ``fresh_share`` of the list is reserved for them, interleaved evenly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from watchnext.retrieve.base import CandidateSource, Query
from watchnext.retrieve.log import DAY_SECONDS, LogColumns, WatchLog


def interleave(primary: np.ndarray, secondary: np.ndarray, share: float) -> np.ndarray:
    """Merge two ranked lists so ``secondary`` fills about ``share`` of every prefix; no repeats."""
    out: list[int] = []
    seen: set[int] = set()
    i = j = 0
    total = len(primary) + len(secondary)
    while (i < len(primary) or j < len(secondary)) and len(out) < total:
        want_secondary = j < len(secondary) and (
            i >= len(primary) or (j + 1) <= share * (len(out) + 1))
        if want_secondary:
            value, j = int(secondary[j]), j + 1
        else:
            value, i = int(primary[i]), i + 1
        if value not in seen:
            seen.add(value)
            out.append(value)
    return np.array(out, dtype=np.int64)


class PopularFresh(CandidateSource):
    """The most watched videos lately, with a share of newly arrived ones mixed in."""

    kind = "popular"

    def __init__(self, columns: LogColumns | None = None, half_life_days: float = 1.0,
                 fresh_days: float = 2.0, fresh_share: float = 0.25, max_items: int = 2000):
        super().__init__(columns)
        if not 0.0 <= fresh_share <= 1.0:
            raise ValueError(f"PopularFresh: fresh_share must be in [0, 1], got {fresh_share}")
        self.half_life_days, self.fresh_days = half_life_days, fresh_days
        self.fresh_share, self.max_items = fresh_share, max_items
        self.ranked = np.zeros(0, np.int64)
        self.scores = np.zeros(0, np.float32)
        self.fresh = np.zeros(0, bool)

    def _fit(self, log: WatchLog, table: pa.Table) -> None:
        popularity = np.bincount(log.items, weights=log.decay(self.half_life_days),
                                 minlength=log.num_items)
        first_seen = np.full(log.num_items, np.inf)
        np.minimum.at(first_seen, log.items, log.times)
        is_fresh = first_seen >= log.now - self.fresh_days * DAY_SECONDS
        by_popularity = np.lexsort((np.arange(log.num_items), -popularity))
        ranked = interleave(by_popularity[~is_fresh[by_popularity]],
                            by_popularity[is_fresh[by_popularity]], self.fresh_share)
        self.ranked = ranked[:self.max_items]
        self.scores = popularity[self.ranked].astype(np.float32)
        self.fresh = is_fresh[self.ranked]
        self.item_ids = log.item_ids

    def retrieve(self, query: Query, n: int) -> tuple[np.ndarray, np.ndarray]:
        end = n + len(query.exclude) + 1
        return self.allowed(self.ranked[:end], self.scores[:end], query, n)

    def params(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days, "fresh_days": self.fresh_days,
                "fresh_share": self.fresh_share, "max_items": self.max_items}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ranked": self.ranked, "scores": self.scores, "fresh": self.fresh}

    def ids(self) -> dict[str, list[str]]:
        return {"items": self.item_ids}

    def _restore(self, arrays: dict[str, np.ndarray], ids: dict[str, list[str]]) -> None:
        self.ranked, self.scores, self.fresh = arrays["ranked"], arrays["scores"], arrays["fresh"]
        self.item_ids = ids["items"]
        if len(self.ranked) and int(self.ranked.max()) >= len(self.item_ids):
            raise ValueError("popular ranking refers to items beyond the item list")

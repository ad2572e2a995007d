"""Topic match: popular videos that share a topic (category, tag) with the query video.

Used where the logs carry a topic feature (``topic_column``: one value, a list, or a
``separator``-joined string per row). A video's topics are those of its latest row; within a topic,
videos are ranked by time-decayed watch count. When the query video is unknown, the user's most
watched topics stand in for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.data.errors import DataError
from watchnext.retrieve.base import CandidateSource, Query, csr_from_pairs
from watchnext.retrieve.log import LogColumns, WatchLog, times_in_seconds


def _csr_rows(indptr: np.ndarray, values: np.ndarray, row: int) -> np.ndarray:
    return values[indptr[row]:indptr[row + 1]]


class TopicMatch(CandidateSource):
    """Items of the query video's topics (or the user's favourite topics), most popular first."""

    kind = "topic"

    def __init__(self, columns: LogColumns | None = None, topic_column: str = "topic",
                 separator: str = "|", half_life_days: float = 7.0, max_per_topic: int = 500,
                 user_topics: int = 3):
        super().__init__(columns)
        self.topic_column, self.separator = topic_column, separator
        self.half_life_days, self.max_per_topic, self.user_topics = (
            half_life_days, max_per_topic, user_topics)
        self.user_ids: list[str] = []
        self.topics: list[str] = []
        self.state: dict[str, np.ndarray] = {}
        self._users: dict[str, int] = {}

    def _fit(self, log: WatchLog, table: pa.Table) -> None:
        if self.topic_column not in table.column_names:
            raise DataError("topic column is missing; TopicMatch needs a topic/category feature",
                            column=self.topic_column)
        item_ids, item_codes, topic_codes = self._latest_topics(table)
        self._set_ids(item_ids, log.user_ids)
        n_items, n_topics = len(self.item_ids), len(self.topics)
        popularity = np.zeros(n_items)
        log_to_mine = np.array([self.item_index.get(v, -1) for v in log.item_ids], np.int64)
        mine = log_to_mine[log.items] if len(log) else np.zeros(0, np.int64)
        seen = mine >= 0
        np.add.at(popularity, mine[seen], log.decay(self.half_life_days)[seen])
        item_indptr, item_topics, _ = csr_from_pairs(item_codes, topic_codes,
                                                     np.ones(len(item_codes)), n_items, n_topics)
        topic_indptr, topic_items, topic_scores = csr_from_pairs(
            topic_codes, item_codes, popularity[item_codes] + 1e-9, n_topics, self.max_per_topic)
        user_rows, user_topics, user_weights = self._user_topic_pairs(log, mine, seen,
                                                                      item_indptr, item_topics)
        user_indptr, user_top, _ = csr_from_pairs(user_rows, user_topics, user_weights,
                                                  len(self.user_ids), self.user_topics)
        self.state = {"item_indptr": item_indptr, "item_topics": item_topics,
                      "topic_indptr": topic_indptr, "topic_items": topic_items,
                      "topic_scores": topic_scores, "user_indptr": user_indptr,
                      "user_topics": user_top}

    def _latest_topics(self, table: pa.Table) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Item ids, and (item code, topic code) pairs from each item's latest row; sets topics."""
        rows = table.filter(pc.and_(pc.is_valid(table[self.columns.item]),
                                    pc.is_valid(table[self.topic_column])))
        time_column = self.columns.time_column(rows)
        times = times_in_seconds(rows[time_column], time_column)
        items = np.asarray(pc.cast(rows[self.columns.item], pa.string()).to_pylist(), dtype=str)
        order = np.lexsort((times, items))[::-1]
        _, first = np.unique(items[order], return_index=True)
        latest = order[first]
        lists = self._as_lists(rows[self.topic_column].take(pa.array(latest)))
        parents = pc.list_parent_indices(lists).to_numpy()
        flat = pc.list_flatten(lists)
        encoded = pc.dictionary_encode(flat)
        self.topics = [str(v) for v in encoded.dictionary.to_pylist()]
        return ([str(v) for v in items[latest]], parents.astype(np.int64),
                encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))

    def _as_lists(self, column: pa.ChunkedArray) -> pa.ListArray:
        column = column.combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            return column.cast(pa.list_(pa.string()))
        return pc.split_pattern(pc.cast(column, pa.string()), self.separator)

    def _user_topic_pairs(self, log: WatchLog, mine: np.ndarray, seen: np.ndarray,
                          item_indptr: np.ndarray, item_topics: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        counts = np.diff(item_indptr)[mine[seen]]
        users = np.repeat(log.users[seen], counts)
        weights = np.repeat(log.decay(self.half_life_days)[seen], counts)
        topics = np.concatenate([_csr_rows(item_indptr, item_topics, i) for i in mine[seen]]) \
            if seen.any() else np.zeros(0, np.int64)
        return users, topics, weights

    def _set_ids(self, item_ids: list[str], user_ids: list[str]) -> None:
        self.item_ids, self.user_ids = item_ids, user_ids
        self._users = {v: i for i, v in enumerate(user_ids)}

    def query_topics(self, query: Query) -> np.ndarray:
        """Topic codes for the query: its video's topics, else the user's favourite ones."""
        item = self.item_index.get(query.video_id) if query.video_id is not None else None
        if item is not None:
            topics = _csr_rows(self.state["item_indptr"], self.state["item_topics"], item)
            if len(topics):
                return topics
        user = self._users.get(query.user_id) if query.user_id is not None else None
        if user is not None:
            return _csr_rows(self.state["user_indptr"], self.state["user_topics"], user)
        return np.zeros(0, np.int64)

    def retrieve(self, query: Query, n: int) -> tuple[np.ndarray, np.ndarray]:
        topics = self.query_topics(query)
        if not len(topics):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        s = self.state
        items = np.concatenate([_csr_rows(s["topic_indptr"], s["topic_items"], t) for t in topics])
        scores = np.concatenate([_csr_rows(s["topic_indptr"], s["topic_scores"], t)
                                 for t in topics])
        order = np.lexsort((items, -scores))
        items, scores = items[order], scores[order]
        _, first = np.unique(items, return_index=True)
        keep = np.sort(first)
        return self.allowed(items[keep], scores[keep], query, n)

    def params(self) -> dict[str, Any]:
        return {"topic_column": self.topic_column, "separator": self.separator,
                "half_life_days": self.half_life_days, "max_per_topic": self.max_per_topic,
                "user_topics": self.user_topics}

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.state)

    def ids(self) -> dict[str, list[str]]:
        return {"items": self.item_ids, "users": self.user_ids, "topics": self.topics}

    def _restore(self, arrays: dict[str, np.ndarray], ids: dict[str, list[str]]) -> None:
        self.state = arrays
        self.topics = ids["topics"]
        self._set_ids(ids["items"], ids["users"])
        if (len(arrays["item_indptr"]) != len(self.item_ids) + 1
                or len(arrays["topic_indptr"]) != len(self.topics) + 1
                or len(arrays["user_indptr"]) != len(self.user_ids) + 1):
            raise ValueError("topic arrays disagree with the id lists")

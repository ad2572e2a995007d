"""The watch log every candidate source is fitted on: who watched what, and when.

Impression logs hold shown items; retrieval learns from *watched* ones (a positive engagement
label such as ``is_click``), ordered in time per user. ``WatchLog`` extracts that once from an
Arrow table so the sources share one parse, with ids kept as strings (the service's id type).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.data.errors import DataError
from watchnext.data.io import where

DAY_SECONDS = 86400.0
TIME_CANDIDATES = ("time_ms", "timestamp", "time", "date", "day")


@dataclass(frozen=True)
class LogColumns:
    """Which columns of an impression log mean user, item, time and "watched"."""

    user: str = "user_id"
    item: str = "video_id"
    time: str = ""
    watched: str = ""

    def time_column(self, table: pa.Table) -> str:
        """The explicit time column, else the first conventional one present."""
        if self.time:
            return self.time
        for name in TIME_CANDIDATES:
            if name in table.column_names:
                return name
        raise DataError(f"no time column found (tried {', '.join(TIME_CANDIDATES)}); "
                        "name one with LogColumns(time=...)")


@dataclass
class WatchLog:
    """Watches sorted by (user, time): parallel arrays of user codes, item codes and times."""

    users: np.ndarray  # [N] int64 codes into user_ids
    items: np.ndarray  # [N] int64 codes into item_ids
    times: np.ndarray  # [N] float64 seconds since the epoch
    user_ids: list[str]
    item_ids: list[str]
    now: float = 0.0  # the latest time in the log: ages and decays are measured from here
    _item_index: dict[str, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def item_index(self) -> dict[str, int]:
        if not self._item_index:
            self._item_index.update({v: i for i, v in enumerate(self.item_ids)})
        return self._item_index

    @classmethod
    def from_table(cls, table: pa.Table, columns: LogColumns | None = None) -> WatchLog:
        """Watched rows of ``table`` (all rows when ``columns.watched`` is empty).

        Rows with a null user or item are skipped: they cannot link two watches.
        """
        columns = columns or LogColumns()
        time_column = columns.time_column(table)
        for name in (columns.user, columns.item, time_column, columns.watched):
            if name and name not in table.column_names:
                raise DataError("column needed for retrieval is missing",
                                file=where(table, 0)[0] if table.num_rows else "<table>",
                                column=name)
        keep = pc.and_(pc.is_valid(table[columns.user]), pc.is_valid(table[columns.item]))
        if columns.watched:
            keep = pc.and_(keep, pc.fill_null(pc.greater(table[columns.watched], 0), False))
        rows = table.filter(keep)
        users, user_ids = _codes(rows[columns.user])
        items, item_ids = _codes(rows[columns.item])
        times = times_in_seconds(rows[time_column], time_column)
        order = np.lexsort((times, users))
        now = float(times.max()) if len(times) else 0.0
        return cls(users[order], items[order], times[order], user_ids, item_ids, now)

    def decay(self, half_life_days: float) -> np.ndarray:
        """Per watch: 0.5 ** (age / half-life), 1 for the newest watch; no decay when 0."""
        if half_life_days <= 0:
            return np.ones(len(self.times))
        return np.power(0.5, (self.now - self.times) / (half_life_days * DAY_SECONDS))

    def user_starts(self) -> np.ndarray:
        """Index of each user's first watch, plus ``len(self)`` at the end."""
        change = np.flatnonzero(np.diff(self.users)) + 1
        return np.r_[0, change, len(self.users)].astype(np.int64)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    encoded = pc.dictionary_encode(pc.cast(column, pa.string()).combine_chunks())
    return (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
            [str(v) for v in encoded.dictionary.to_pylist()])


def times_in_seconds(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """Seconds since the epoch from a timestamp, epoch (ms or s) or YYYYMMDD day column."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_timestamp(column.type):
        micros = pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64())
        return pc.fill_null(micros, 0).to_numpy().astype(np.float64) / 1e6
    if pa.types.is_string(column.type):
        parsed = pc.strptime(column, format="%Y-%m-%d", unit="s", error_is_null=True)
        return pc.fill_null(pc.cast(parsed, pa.int64()), 0).to_numpy().astype(np.float64)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise DataError(f"cannot read time from a {column.type} column", column=name)
    values = pc.fill_null(pc.cast(column, pa.float64()), 0.0).to_numpy()
    if name.endswith("_ms"):
        return values / 1000.0
    if len(values) and values.min() >= 19000101 and values.max() <= 21001231:
        days, inverse = np.unique(values, return_inverse=True)
        return np.array([_yyyymmdd(int(v)) for v in days], dtype=np.float64)[inverse]
    return values


def _yyyymmdd(value: int) -> float:
    day = dt.datetime(value // 10000, value // 100 % 100, value % 100, tzinfo=dt.UTC)
    return day.timestamp()

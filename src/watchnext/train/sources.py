"""Batch sources for the training loop: day-partitioned Parquet on disk, or tables in memory.

Both give the loop the same thing: days in order, each with a row count and a fingerprint, and,
once the encoder is known, days that ``data.streaming.shard_steps`` cuts into identical steps.
On disk, every row is validated and the encoder fitted by a bounded-memory scan; in memory, by
the same row checks (``data.rowcheck``) and ``FeatureEncoder.fit``. Either way a null or NaN label
is an absent label, and ``skip_bad_rows`` drops (and counts) what the checks refuse.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from watchnext.config import RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.partitions import BadFile, discover_days
from watchnext.data.rowcheck import drop_bad_rows
from watchnext.data.scan import build_encoder, gathered, scan
from watchnext.data.streaming import Day, StreamLayout, TableDay
from watchnext.train.distributed import Distributed


@dataclass
class Prepared:
    """The days left to train, encodable; the encoder; the bad rows and files found in them."""

    encoder: FeatureEncoder
    days: list[Day]
    skipped: Counter = field(default_factory=Counter)
    bad_files: list[BadFile] = field(default_factory=list)


class Source(Protocol):
    default_shuffle_buffer: int

    def days(self, config: RunConfig, skip_bad: bool) -> list[Any]:
        """Every day, in training order: objects with ``name``, ``num_rows``, ``fingerprint()``."""

    def prepare(self, config: RunConfig, todo: list[Any], layout: StreamLayout, local: list[int],
                skip_bad: bool, encoder_state: dict[str, Any] | None, group: Distributed
                ) -> Prepared:
        """Validate ``todo`` and fit the encoder (or restore ``encoder_state``)."""


class ParquetSource:
    """``root/day=YYYY-MM-DD/*.parquet``, read window by window: memory does not grow with days."""

    default_shuffle_buffer = 100_000

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.bad_files: list[BadFile] = []

    def days(self, config: RunConfig, skip_bad: bool) -> list[Any]:
        days, self.bad_files = discover_days(self.root, config, skip_bad)
        return days

    def prepare(self, config: RunConfig, todo: list[Any], layout: StreamLayout, local: list[int],
                skip_bad: bool, encoder_state: dict[str, Any] | None, group: Distributed
                ) -> Prepared:
        found = gathered(scan(config, todo, layout, local, skip_bad, fit=encoder_state is None),
                         group.all_gather_bytes if group.active else None)
        found.raise_error()
        names = {d.name for d in todo}
        bad_files = [b for b in self.bad_files if b.day in names]
        for b in bad_files:
            found.skipped[b.reason] += b.rows or 0
        encoder = FeatureEncoder.from_state(config, encoder_state) if encoder_state else \
            build_encoder(config, found)
        return Prepared(encoder, todo, found.skipped, bad_files)


@dataclass(frozen=True)
class _TableDay:
    """A named table (or encoded batch) before the encoder is known."""

    name: str
    ordinal: int
    data: pa.Table | Batch

    @property
    def num_rows(self) -> int:
        return self.data.num_rows if isinstance(self.data, pa.Table) else len(self.data)

    def fingerprint(self) -> str:
        return f"{self.num_rows} rows"


class TableSource:
    """Named tables in training order (``Ranker.fit``: one, ``fit_sequential``: one per day).

    A day named ``YYYY-MM-DD`` is seeded like the Parquet partition of that date, so the same
    rows give the same steps from either source. ``encoder`` (required when the days are already
    encoded ``Batch``es) skips fitting.
    """

    def __init__(self, days: Sequence[tuple[str, pa.Table | Batch]],
                 encoder: FeatureEncoder | None = None):
        if not days:
            raise ValueError("no data to train on")
        self._days = [_TableDay(name, _ordinal(name, i), data) for i, (name, data) in enumerate(days)]
        self.encoder = encoder
        self.default_shuffle_buffer = max(d.num_rows for d in self._days)  # a day is one window

    def days(self, config: RunConfig, skip_bad: bool) -> list[Any]:
        return list(self._days)

    def prepare(self, config: RunConfig, todo: list[Any], layout: StreamLayout, local: list[int],
                skip_bad: bool, encoder_state: dict[str, Any] | None, group: Distributed
                ) -> Prepared:
        skipped: Counter = Counter()
        tables = {d.name: _checked(config, d.data, skip_bad, skipped) for d in todo
                  if isinstance(d.data, pa.Table)}
        if encoder_state is not None:
            encoder = FeatureEncoder.from_state(config, encoder_state)
        elif self.encoder is not None:
            encoder = self.encoder
        else:
            encoder = FeatureEncoder(config).fit(pa.concat_tables(list(tables.values()),
                                                                  promote_options="permissive"))
        days = [TableDay(d.name, d.ordinal, encoder.transform(tables[d.name]) if d.name in tables
                         else d.data) for d in todo]
        return Prepared(encoder, days, skipped)


def _checked(config: RunConfig, table: pa.Table, skip_bad: bool, skipped: Counter) -> pa.Table:
    """``table`` without its bad rows (counted in ``skipped``), or the first one's error."""
    table, reasons = drop_bad_rows(config, table, skip_bad)
    skipped.update(reasons)
    return table


def _ordinal(name: str, index: int) -> int:
    try:
        return datetime.date.fromisoformat(name).toordinal()
    except ValueError:
        return index

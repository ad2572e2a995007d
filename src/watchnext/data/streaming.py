"""Streaming a day of Parquet through the encoder in bounded memory, shuffled, sharded, seekable.

The day's files, in sorted order, number its rows 0..N-1. A run has K *shards* (K = the number of
processes by default); shard s owns the contiguous rows [s*N/K, (s+1)*N/K), so each process reads
only its own share of the files. A shard is read in *windows* of W rows (the shuffle buffer, a
multiple of the per-shard batch b = global batch / K): a window is read, its bad rows dropped
(``--skip-bad-rows``) or reported, encoded, permuted with a generator seeded by
(seed, day, epoch, shard, window), and cut into ceil(W_raw / b) minibatches. Every step of the
run takes one minibatch from every shard; their union is the global batch.

Why this shape:
- memory is one window per shard plus one Parquet row group being decoded, whatever N is;
- the step -> (window, part) map comes from footer row counts alone, so a resumed run seeks
  straight to its window and any number of processes computes the same schedule without talking;
- results depend on K, not on the number of processes, so 2 processes x 1 shard and 1 process
  x 2 shards train the same model (and a run may resume on a different number of machines).
"""

from __future__ import annotations

import math
import queue
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch

from watchnext.config import ConfigError, RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.errors import DataError
from watchnext.data.io import ROW_COLUMN, SOURCE_COLUMN
from watchnext.data.partitions import DayPartition, FileInfo, column_roles, open_parquet
from watchnext.data.rowcheck import drop_bad_rows


@dataclass(frozen=True)
class StreamLayout:
    """How a day is cut: ``shards`` shards, ``part_rows`` rows per shard per step, windows of
    ``window_rows`` rows (a multiple of ``part_rows``)."""

    shards: int
    part_rows: int
    window_rows: int
    read_rows: int = 65_536

    @classmethod
    def build(cls, batch_size: int, shards: int, shuffle_buffer: int,
              read_rows: int = 65_536) -> StreamLayout:
        if shards < 1:
            raise ConfigError(f"shards: must be >= 1, got {shards}")
        if batch_size % shards:
            raise ConfigError(f"train.batch_size ({batch_size}) must be divisible by the number of "
                             f"shards ({shards}): every shard contributes an equal part to a step")
        part = batch_size // shards
        window = max(part, math.ceil(max(shuffle_buffer, 1) / part) * part)
        return cls(shards, part, window, read_rows)

    def bounds(self, day: DayPartition, shard: int) -> tuple[int, int]:
        """The day rows [lo, hi) that ``shard`` owns."""
        n = day.num_rows
        return shard * n // self.shards, (shard + 1) * n // self.shards

    def windows(self, day: DayPartition, shard: int) -> list[tuple[int, int]]:
        lo, hi = self.bounds(day, shard)
        return [(start, min(start + self.window_rows, hi)) for start in
                range(lo, hi, self.window_rows)]

    def parts(self, rows: int) -> int:
        return math.ceil(rows / self.part_rows)

    def steps(self, day: DayPartition) -> int:
        """Steps in one pass over the day: the longest shard's (shorter ones end on empty parts)."""
        return max(sum(self.parts(b - a) for a, b in self.windows(day, s))
                   for s in range(self.shards))


@dataclass
class Piece:
    """Rows read from one file (``table``), or rows that could not be read (``bad_rows``)."""

    table: pa.Table | None
    bad_rows: int = 0
    reason: str = ""


@dataclass
class Skipped:
    """Bad rows dropped while streaming, by reason (see ``rowcheck.REASONS``)."""

    rows: Counter = field(default_factory=Counter)

    def add(self, reason: str, n: int) -> None:
        if n:
            self.rows[reason] += n

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def read_range(day: DayPartition, lo: int, hi: int, columns: list[str], read_rows: int,
               skip_bad: bool) -> Iterator[Piece]:
    """Rows [lo, hi) of the day, file by file, row group by row group, ``read_rows`` at a time.

    A row group that fails to decode (corrupt page, checksum mismatch) raises ``DataError``
    naming the file and its rows, or with ``skip_bad`` is yielded as bad rows and reading goes on.
    """
    offset = 0
    for info in day.files:
        start, stop = max(lo - offset, 0), min(hi - offset, info.num_rows)
        offset += info.num_rows
        if start < stop:
            yield from _read_file(info, start, stop, columns, read_rows, skip_bad)


def _read_file(info: FileInfo, start: int, stop: int, columns: list[str], read_rows: int,
               skip_bad: bool) -> Iterator[Piece]:
    starts = info.row_group_starts
    first = int(np.searchsorted(starts, start, side="right")) - 1
    with open_parquet(info.path) as pf:
        for rg in range(first, len(starts) - 1):
            rg_lo, rg_hi = starts[rg], starts[rg + 1]
            if rg_lo >= stop:
                break
            lo, hi = max(start, rg_lo), min(stop, rg_hi)
            try:
                for piece in _read_row_group(pf, info, rg, lo, hi, columns, read_rows):
                    yield piece
                    lo += piece.table.num_rows
            except (pa.ArrowException, OSError) as exc:
                if not skip_bad:
                    raise DataError(f"row group {rg} (rows {rg_lo}-{rg_hi - 1}) cannot be read: {exc}",
                                    file=str(info.path), row=lo) from None
                yield Piece(None, hi - lo, "unreadable_row_group")


def _read_row_group(pf, info: FileInfo, rg: int, lo: int, hi: int, columns: list[str],
                    read_rows: int) -> Iterator[Piece]:
    row = info.row_group_starts[rg]
    present = [c for c in columns if c in pf.schema_arrow.names]  # optional ones may be absent
    for record_batch in pf.iter_batches(batch_size=read_rows, row_groups=[rg], columns=present,
                                        use_threads=False):
        n = record_batch.num_rows
        a, b = max(lo - row, 0), min(hi - row, n)
        if a < b:
            table = pa.Table.from_batches([record_batch.slice(a, b - a)])
            yield Piece(_with_source(table, str(info.path), row + a))
        row += n
        if row >= hi:
            return


def _with_source(table: pa.Table, path: str, first_row: int) -> pa.Table:
    """Attach file and row numbers (dictionary-encoded: one string per file, not per row)."""
    n = table.num_rows
    source = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([path]))
    table = table.append_column(SOURCE_COLUMN, source)
    return table.append_column(ROW_COLUMN, pa.array(np.arange(first_row, first_row + n)))


@dataclass
class Window:
    """One shuffle window of a shard: the rows that were read, and the raw row count."""

    index: int
    pieces: list[Piece]
    raw_rows: int


def windows(day: DayPartition, layout: StreamLayout, shard: int, columns: list[str],
            skip_bad: bool, first_window: int = 0) -> Iterator[Window]:
    """The shard's windows from ``first_window`` on, reading one continuous range."""
    spans = layout.windows(day, shard)[first_window:]
    if not spans:
        return
    reader = read_range(day, spans[0][0], spans[-1][1], columns, layout.read_rows, skip_bad)
    carry: Piece | None = None
    for index, (a, b) in enumerate(spans, start=first_window):
        need, pieces = b - a, []
        while need > 0:
            piece = carry if carry is not None else next(reader, None)
            if piece is None:
                raise DataError(f"day {day.name} ended {need} rows early: files changed while "
                                "reading", file=str(day.files[-1].path))
            carry = None
            size = piece.table.num_rows if piece.table is not None else piece.bad_rows
            if size > need:
                head, carry = _split(piece, need)
                piece, size = head, need
            pieces.append(piece)
            need -= size
        yield Window(index, pieces, b - a)


def _split(piece: Piece, n: int) -> tuple[Piece, Piece]:
    if piece.table is None:
        return Piece(None, n, piece.reason), Piece(None, piece.bad_rows - n, piece.reason)
    return Piece(piece.table.slice(0, n)), Piece(piece.table.slice(n))


def window_table(window: Window, config: RunConfig, skip_bad: bool, skipped: Skipped
                 ) -> pa.Table | None:
    """The window's good rows as one table; bad rows raise (default) or are counted and dropped."""
    for piece in window.pieces:
        if piece.table is None:
            skipped.add(piece.reason, piece.bad_rows)
    tables = [p.table for p in window.pieces if p.table is not None and p.table.num_rows]
    if not tables:
        return None
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"files disagree on column types: {exc}",
                        file=tables[0][SOURCE_COLUMN][0].as_py()) from exc
    table, reasons = drop_bad_rows(config, table, skip_bad)
    for reason, n in reasons.items():
        skipped.add(reason, n)
    return table


def empty_batch(encoder: FeatureEncoder) -> Batch:
    """A zero-row batch of the right shapes, for a shard that has run out of rows this step."""
    n_multi = len(encoder.multi)
    length = max((f.max_length for f in encoder.multi), default=0)
    return Batch(
        categorical=torch.zeros((0, len(encoder.categorical)), dtype=torch.int64),
        dense=torch.zeros((0, len(encoder.numeric)), dtype=torch.float32),
        multi=torch.zeros((0, n_multi, length), dtype=torch.int64),
        position=torch.zeros(0, dtype=torch.int64), device=torch.zeros(0, dtype=torch.int64),
        labels=torch.zeros((0, len(encoder.config.tasks)), dtype=torch.float32),
        users=np.zeros(0, np.int64), requests=np.zeros(0, np.int64))


def needed_columns(config: RunConfig) -> list[str]:
    return sorted(column_roles(config))


@dataclass(frozen=True)
class ShardCursor:
    """Where a shard's stream starts: pass ``epoch`` over ``day``, at ``step``."""

    day: Day
    day_seed: int
    epoch: int
    step: int


@dataclass
class StepPart:
    """A shard's minibatch for one step, and the bad rows dropped from its window (counted on the
    window's first part only, so a resumed run never counts a window twice)."""

    batch: Batch
    skipped: Counter


@dataclass(frozen=True)
class TableDay:
    """A day held in memory, already encoded: the in-memory twin of a ``DayPartition``.

    Its rows are numbered 0..N-1 like a day's files, so ``StreamLayout`` cuts it into the same
    shards, windows and steps, and ``shard_steps`` permutes it with the same seeds: the same rows
    train the same model whether they come from a table or from Parquet on disk.
    """

    name: str
    ordinal: int
    batch: Batch

    @property
    def num_rows(self) -> int:
        return len(self.batch)

    def fingerprint(self) -> str:
        return f"{self.num_rows} rows"


Day = DayPartition | TableDay


def shard_steps(encoder: FeatureEncoder, layout: StreamLayout, shard: int, cursor: ShardCursor,
                seed: int, skip_bad: bool) -> Iterator[StepPart]:
    """The shard's minibatch for every step of the pass, from ``cursor.step`` to the day's end.

    Seeks directly: the window holding ``cursor.step`` is found from row counts, read, permuted
    exactly as in an uninterrupted run, and its earlier parts are skipped without training.
    """
    day = cursor.day
    spans = layout.windows(day, shard)
    parts = [layout.parts(b - a) for a, b in spans]
    ends = np.cumsum(parts)
    total = layout.steps(day)
    first = int(np.searchsorted(ends, cursor.step, side="right"))
    step = cursor.step
    for index, batch, skipped in _window_batches(encoder, layout, day, shard, first, skip_bad):
        rng = np.random.default_rng([seed, cursor.day_seed, cursor.epoch, shard, index])
        order = rng.permutation(len(batch))
        window_first = int(ends[index] - parts[index])
        for k, rows in enumerate(np.array_split(order, parts[index])):
            if window_first + k >= step:
                counted = skipped if k == 0 else Counter()
                yield StepPart(batch.select(torch.from_numpy(rows)), counted)
                step += 1
    empty = empty_batch(encoder)
    while step < total:
        yield StepPart(empty, Counter())
        step += 1


def _window_batches(encoder: FeatureEncoder, layout: StreamLayout, day: Day, shard: int,
                    first: int, skip_bad: bool) -> Iterator[tuple[int, Batch, Counter]]:
    """(window index, its encoded rows, bad rows dropped from it) from window ``first`` on."""
    if isinstance(day, TableDay):
        for index, (a, b) in enumerate(layout.windows(day, shard)[first:], start=first):
            yield index, day.batch.slice(a, b), Counter()
        return
    columns = needed_columns(encoder.config)
    for window in windows(day, layout, shard, columns, skip_bad, first_window=first):
        skipped = Skipped()
        table = window_table(window, encoder.config, skip_bad, skipped)
        batch = encoder.transform(table) if table is not None else empty_batch(encoder)
        yield window.index, batch, skipped.rows


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Produce ``items`` on a background thread, ``depth`` ahead: Arrow decoding and NumPy
    encoding release the GIL, so reading the next window overlaps training on this one.
    Order is unchanged, so results stay deterministic; an exception is re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((item, None))
            q.put((done, None))
        except BaseException as exc:  # handed over: the consumer re-raises it
            q.put((done, exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)

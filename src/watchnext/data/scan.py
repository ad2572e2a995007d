"""The streaming pre-pass: validate every row, count bad ones, and fit the encoder, in bounded memory.

Training never starts on data that would fail later: the scan reads every row the run will train
on (each process its own shards) before anything is written, so a bad row stops the run with an
error naming its file and row while the output folder is still untouched. The same pass fits
what ``FeatureEncoder.fit`` fits in memory — vocabularies from merged id counts (same ordering
and ``min_count`` / ``max_vocab`` rules) and numeric mean / std from merged moments — so a
streamed run encodes exactly like an in-memory one. Hashed features need no counts at all.
Processes exchange their partial results as JSON bytes (no pickle) through ``gather``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.config import RunConfig
from watchnext.data import expressions
from watchnext.data.encoder import FeatureEncoder, _as_lists, _floats, _unscaled, id_values
from watchnext.data.errors import DataError
from watchnext.data.hashing import HashedVocabulary
from watchnext.data.partitions import DayPartition
from watchnext.data.rowcheck import drop_bad_rows
from watchnext.data.streaming import StreamLayout, needed_columns, read_range
from watchnext.data.vocab import Vocabulary, _as_strings

Gather = Callable[[bytes], list[bytes]]
DEVICE_VOCAB = "__device__"


class _IdCounts:
    """Value counts merged batch by batch with Arrow group-by: memory is O(distinct ids)."""

    def __init__(self) -> None:
        self.values: list[pa.Array] = []
        self.counts: list[pa.Array] = []
        self.pending = 0
        self.compacted = 0

    def add(self, column: pa.ChunkedArray | pa.Array) -> None:
        vc = pc.value_counts(_as_strings(column).drop_null())
        self.values.append(vc.field("values"))
        self.counts.append(vc.field("counts"))
        self.pending += len(vc)
        if self.pending > max(1_000_000, 2 * self.compacted):
            self._compact()

    def _compact(self) -> None:
        if len(self.values) > 1:
            table = pa.table({"v": pa.concat_arrays(self.values),
                              "c": pa.concat_arrays(self.counts).cast(pa.int64())})
            merged = table.group_by("v").aggregate([("c", "sum")])
            self.values, self.counts = [merged["v"].combine_chunks()], [merged["c_sum"].combine_chunks()]
        self.compacted = self.pending = sum(len(v) for v in self.values)

    def to_json(self) -> list[list]:
        self._compact()
        if not self.values:
            return [[], []]
        return [self.values[0].to_pylist(), self.counts[0].to_pylist()]


@dataclass
class ScanResult:
    """What one process saw; ``merge`` combines all processes' results in rank order."""

    rows: int = 0
    skipped: Counter = field(default_factory=Counter)
    error: tuple[int, int, str, str, str, int | None] | None = None  # order key + DataError parts
    counts: dict[str, list[list]] = field(default_factory=dict)
    moments: dict[str, list[float]] = field(default_factory=dict)  # [n, mean, m2]

    def to_bytes(self) -> bytes:
        return json.dumps({"rows": self.rows, "skipped": dict(self.skipped), "error": self.error,
                           "counts": self.counts, "moments": self.moments}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ScanResult:
        raw = json.loads(data)
        error = tuple(raw["error"]) if raw["error"] else None
        return cls(raw["rows"], Counter(raw["skipped"]), error, raw["counts"], raw["moments"])

    def raise_error(self) -> None:
        if self.error is not None:
            _, _, message, file, column, row = self.error
            raise DataError(message, file=file, column=column, row=row)


def scan(config: RunConfig, days: Sequence[DayPartition], layout: StreamLayout,
         shards: Sequence[int], skip_bad: bool, fit: bool = True) -> ScanResult:
    """Validate (and with ``fit`` count) the rows of ``shards`` of every day."""
    result = ScanResult()
    counters = {f.name: _IdCounts() for f in config.features
                if f.kind != "numeric" and not f.hash_buckets} if fit else {}
    if fit and config.bias.device:
        counters[DEVICE_VOCAB] = _IdCounts()  # left empty where no file has the column
    moments = {f.name: [0, 0.0, 0.0] for f in config.features if f.kind == "numeric"} if fit else {}
    columns = needed_columns(config)
    for day_index, day in enumerate(days):
        offsets = _file_offsets(day)
        for shard in shards:
            lo, hi = layout.bounds(day, shard)
            try:
                for piece in read_range(day, lo, hi, columns, layout.read_rows, skip_bad):
                    if piece.table is None:
                        result.rows += piece.bad_rows
                        result.skipped[piece.reason] += piece.bad_rows
                        continue
                    table = _check(config, piece.table, skip_bad, result)
                    if fit and table.num_rows:
                        _count(config, table, counters, moments)
            except DataError as exc:
                row = offsets.get(exc.file, 0) + (exc.row or 0)
                result.error = (day_index, row, _bare_message(exc), exc.file, exc.column, exc.row)
                return result
    result.counts = {name: c.to_json() for name, c in counters.items()}
    result.moments = moments
    return result


def _check(config: RunConfig, table: pa.Table, skip_bad: bool, result: ScanResult) -> pa.Table:
    result.rows += table.num_rows
    table, reasons = drop_bad_rows(config, table, skip_bad)
    result.skipped.update(reasons)
    return table


def _count(config: RunConfig, table: pa.Table, counters: dict[str, _IdCounts],
           moments: dict[str, list[float]]) -> None:
    for f in config.features:
        if f.name in counters:
            counters[f.name].add(pc.list_flatten(_as_lists(table, f)) if f.kind == "multi_categorical"
                                 else id_values(table, f))
        elif f.kind == "numeric":
            context = f"feature {f.name!r}"
            raw = expressions.evaluate(f.source, lambda c, ctx=context: _floats(table, c, ctx)) \
                if f.expression else _floats(table, f.source, context)
            _merge_moments(moments[f.name], _unscaled(raw, f.transform))
    if DEVICE_VOCAB in counters and config.bias.device in table.column_names:
        counters[DEVICE_VOCAB].add(table[config.bias.device])


def _merge_moments(acc: list[float], values: np.ndarray) -> None:
    """Chan et al.'s parallel update of (count, mean, sum of squared deviations)."""
    n_b = len(values)
    if not n_b:
        return
    mean_b = float(values.mean())
    m2_b = float(((values - mean_b) ** 2).sum())
    _combine(acc, [n_b, mean_b, m2_b])


def _combine(acc: list[float], other: Sequence[float]) -> None:
    n_a, mean_a, m2_a = acc
    n_b, mean_b, m2_b = other
    n = n_a + n_b
    if not n:
        return
    delta = mean_b - mean_a
    acc[:] = [n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n]


def _file_offsets(day: DayPartition) -> dict[str, int]:
    offsets, total = {}, 0
    for info in day.files:
        offsets[str(info.path)] = total
        total += info.num_rows
    return offsets


def _bare_message(exc: DataError) -> str:
    text = str(exc)
    prefix = str(DataError("", file=exc.file, column=exc.column, row=exc.row))
    return text[len(prefix):] if prefix and text.startswith(prefix) else text


def merge(results: Sequence[ScanResult]) -> ScanResult:
    """Combine per-process results; the reported error is the earliest in day-row order."""
    out = ScanResult()
    errors = [r.error for r in results if r.error is not None]
    out.error = min(errors, key=lambda e: (e[0], e[1])) if errors else None
    for r in results:
        out.rows += r.rows
        out.skipped.update(r.skipped)
        for name, (values, counts) in r.counts.items():
            merged = out.counts.setdefault(name, [[], []])
            merged[0] += values
            merged[1] += counts
        for name, m in r.moments.items():
            _combine(out.moments.setdefault(name, [0, 0.0, 0.0]), m)
    return out


def gathered(result: ScanResult, gather: Gather | None) -> ScanResult:
    """All processes' results merged (identical on every process); alone, the result itself."""
    if gather is None:
        return merge([result])
    return merge([ScanResult.from_bytes(b) for b in gather(result.to_bytes())])


def build_encoder(config: RunConfig, result: ScanResult) -> FeatureEncoder:
    """A fitted encoder from merged counts and moments, as ``FeatureEncoder.fit`` would build."""
    encoder = FeatureEncoder(config)
    for f in config.features:
        if f.kind == "numeric":
            n, mean, m2 = result.moments.get(f.name, [0, 0.0, 0.0])
            encoder.numeric_stats[f.name] = (mean, math.sqrt(m2 / n) + 1e-6) if n else (0.0, 1.0)
        elif f.hash_buckets:
            encoder.vocabularies[f.name] = HashedVocabulary(f.hash_buckets)
        else:
            encoder.vocabularies[f.name] = _vocabulary(result.counts.get(f.name), f.min_count,
                                                       f.max_vocab)
    if result.counts.get(DEVICE_VOCAB, [[]])[0]:  # as in memory: no device column, one device
        encoder.vocabularies[DEVICE_VOCAB] = _vocabulary(result.counts.get(DEVICE_VOCAB), 1, 0)
    return encoder


def _vocabulary(counts: list[list] | None, min_count: int, max_size: int) -> Vocabulary:
    """``Vocabulary.fit``'s rules on merged counts: frequent first, ties by value, then cut."""
    values, freq = (counts or [[], []])
    totals: Counter = Counter()
    for value, n in zip(values, freq, strict=True):
        totals[value] += n
    names = np.array(list(totals.keys()), dtype=object)
    freq_arr = np.array(list(totals.values()), dtype=np.int64)
    keep = freq_arr >= min_count
    names, freq_arr = names[keep], freq_arr[keep]
    order = np.lexsort((names.astype(str), -freq_arr))
    if max_size:
        order = order[:max_size]
    return Vocabulary([str(v) for v in names[order]])

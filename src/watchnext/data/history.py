"""Point-in-time history features: a user's or a video's past behaviour, from earlier days only.

Production rankers lean on such features. Each row sees only rows of strictly earlier days, so
no label of its own day (or later) leaks into its features:

    rate(key, label, day) = (sum of label over key's rows before day + m * prior(day))
                            / (count of key's labelled rows before day + m)

where prior(day) is the global mean of the label before that day (0 on the first day) and m the
smoothing strength, so a key seen once is pulled towards the average instead of reading 0 or 1.
A NaN label (e.g. a watch ratio of a video of unknown length) counts neither in the sum nor in
the count. Besides rates, a key gets its log count of past rows and how many days ago it was
first and last seen (0 when never seen), which tell the model how far to trust the rates.

A ``[[history]]`` block of the run config declares these features and ``add_history`` computes
them, so the names the model reads and the columns computed cannot drift apart.

Everything is computed on a dense (key x day) grid: with days counted in the tens and keys in the
thousands it is small, and a cumulative sum along the day axis reads like the definition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.config import ConfigError, RunConfig
from watchnext.data import expressions
from watchnext.data.encoder import _floats
from watchnext.data.errors import DataError
from watchnext.data.io import where


@dataclass(frozen=True)
class DayGrid:
    """Per-row sums over one key's rows on earlier days (optionally only the last ``window``)."""

    counts: np.ndarray  # [N, L] labelled rows before the row's day, per label
    sums: np.ndarray  # [N, L] label sums over those rows
    rows: np.ndarray  # [N] rows before the row's day, labelled or not


def day_rank(days: np.ndarray) -> np.ndarray:
    """0-based chronological index of each row's day (days sort chronologically, e.g. YYYYMMDD)."""
    return np.unique(days, return_inverse=True)[1].astype(np.int64).reshape(-1)


def key_codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Dense integer codes for a key column (nulls share one code)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    codes = pc.dictionary_encode(column).indices
    return pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1


def _grid(codes: np.ndarray, rank: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[n_keys, n_days] totals of ``weights`` per key and day."""
    n_keys, n_days = int(codes.max()) + 1, int(rank.max()) + 1
    flat = np.bincount(codes * n_days + rank, weights=weights, minlength=n_keys * n_days)
    return flat.reshape(n_keys, n_days)


def _before(grid: np.ndarray, window: int) -> np.ndarray:
    """[n_keys, n_days]: totals over days strictly before each day (the last ``window`` if > 0)."""
    cumulative = np.cumsum(grid, axis=1)
    before = np.zeros_like(cumulative)
    before[:, 1:] = cumulative[:, :-1]
    if window > 0:
        dropped = np.zeros_like(cumulative)
        dropped[:, window + 1:] = cumulative[:, :-window - 1]
        before -= dropped
    return before


def prior_day_stats(codes: np.ndarray, rank: np.ndarray, values: np.ndarray, window: int = 0
                    ) -> DayGrid:
    """Counts and sums of each label over the same key's rows on earlier days only."""
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    counts = np.stack([_before(_grid(codes, rank, present[:, j].astype(np.float64)), window)
                       [codes, rank] for j in range(values.shape[1])], axis=1)
    sums = np.stack([_before(_grid(codes, rank, filled[:, j]), window)[codes, rank]
                     for j in range(values.shape[1])], axis=1)
    rows = _before(_grid(codes, rank, np.ones(len(codes))), window)[codes, rank]
    return DayGrid(counts=counts, sums=sums, rows=rows)


def global_prior(rank: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[N, L]: each label's mean over all rows of earlier days (0 on the first day)."""
    stats = prior_day_stats(np.zeros(len(rank), np.int64), rank, values)
    return np.where(stats.counts > 0, stats.sums / np.maximum(stats.counts, 1.0), 0.0)


def days_seen(codes: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: days since the key was first and last seen on an earlier day (0 if never)."""
    seen = _grid(codes, rank, np.ones(len(codes))) > 0
    n_days = seen.shape[1]
    day = np.arange(n_days)
    first = np.where(seen, day, n_days)
    first = np.minimum.accumulate(first, axis=1)
    last = np.maximum.accumulate(np.where(seen, day, -1), axis=1)
    first_before = np.full_like(first, n_days)
    last_before = np.full_like(last, -1)
    first_before[:, 1:], last_before[:, 1:] = first[:, :-1], last[:, :-1]
    since_first = np.where(first_before < n_days, day - first_before, 0)[codes, rank]
    since_last = np.where(last_before >= 0, day - last_before, 0)[codes, rank]
    return since_first.astype(np.float64), since_last.astype(np.float64)


def add_history_features(table: pa.Table, keys: list[str], labels: Mapping[str, np.ndarray],
                         day_column: str, smoothing: float = 20.0, window: int = 0,
                         prefix: str = "hist", counted: tuple[str, ...] = ()) -> pa.Table:
    """Append, per key, ``{key}_{prefix}_n`` (log1p past rows), ``{key}_{prefix}_{label}``
    (smoothed rates) and, for the full history, ``{key}_{prefix}_first`` / ``_last`` (days since
    the key was first / last seen). ``window > 0`` restricts the history to that many past days.

    For the binary labels in ``counted`` it also appends ``{key}_{prefix}_{label}_pos`` and
    ``_neg``: log1p of the past positives and negatives. A smoothed rate hides whether a rarely
    seen video was ever disliked; the two counts keep that evidence for the model.
    """
    rank = day_rank(table[day_column].to_numpy())
    names = list(labels)
    values = np.stack([np.asarray(labels[n], dtype=np.float64) for n in names], axis=1)
    prior = global_prior(rank, values)
    for key in keys:
        codes = key_codes(table[key])
        stats = prior_day_stats(codes, rank, values, window)
        table = table.append_column(f"{key}_{prefix}_n", pa.array(np.log1p(stats.rows)))
        rates = (stats.sums + smoothing * prior) / (stats.counts + smoothing)
        for j, name in enumerate(names):
            table = table.append_column(f"{key}_{prefix}_{name}", pa.array(rates[:, j]))
        for name in counted:
            j = names.index(name)
            negatives = stats.counts[:, j] - stats.sums[:, j]
            table = table.append_column(f"{key}_{prefix}_{name}_pos", pa.array(np.log1p(stats.sums[:, j])))
            table = table.append_column(f"{key}_{prefix}_{name}_neg", pa.array(np.log1p(negatives)))
        if window == 0:
            since_first, since_last = days_seen(codes, rank)
            table = table.append_column(f"{key}_{prefix}_first", pa.array(since_first))
            table = table.append_column(f"{key}_{prefix}_last", pa.array(since_last))
    return table


def history_label_values(table: pa.Table, config: RunConfig, names: Sequence[str]
                         ) -> dict[str, np.ndarray]:
    """Each label's per-row value: a ``[history_labels]`` expression, else the column itself."""
    defined = dict(config.history_labels)
    out = {}
    for name in names:
        source = defined.get(name, name)
        try:
            values = expressions.evaluate(source, lambda c, n=name: _floats(
                table, c, f"history label {n!r}"))
        except expressions.ExpressionError as exc:
            raise ConfigError(f"history_labels.{name}: {exc}") from None
        out[name] = np.broadcast_to(values, (table.num_rows,)).astype(np.float64)
    return out


def add_history(table: pa.Table, config: RunConfig) -> pa.Table:
    """Compute the columns of every ``[[history]]`` block of the config (one pass per window).

    Rows must cover every day whose history is wanted: a row's features read only strictly
    earlier days, so computing over train, validation and test together leaks nothing. A window
    whose columns the table already holds is kept as it is: logs with precomputed history (as
    the streaming path reads them) are not recomputed from what may be only part of the past.
    """
    day = config.data.day_column
    todo = [(spec, w) for spec in config.history for w in spec.windows
            if not set(spec.columns(w)) <= set(table.column_names)]
    for column in {day, *(spec.entity for spec, _ in todo)} if todo else ():
        if column not in table.column_names:
            file, _ = where(table, 0) if table.num_rows else ("<table>", None)
            raise DataError("required column is missing (history features)", file=file,
                            column=column)
    labels: dict[int, dict[str, np.ndarray]] = {}  # per block: its label values, computed once
    for spec, window in todo:
        if id(spec) not in labels:
            labels[id(spec)] = history_label_values(table, config, spec.labels)
        computed = add_history_features(table.select([spec.entity, day]), [spec.entity], labels[id(spec)],
                                        day, smoothing=spec.smoothing,
                                        window=spec.window_days(window), prefix=spec.tag(window),
                                        counted=spec.counted)
        for name in spec.columns(window):
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, computed[name])
            else:
                table = table.append_column(name, computed[name])
    return table


def split_history(splits: dict[str, pa.Table], config: RunConfig | None) -> dict[str, pa.Table]:
    """``add_history`` over all splits together (each row reads only earlier days, of any
    split), cut back into the same splits in the same row order."""
    if config is None or not config.history or not splits:
        return splits
    names = list(splits)
    whole = add_history(pa.concat_tables([splits[n] for n in names], promote_options="permissive"),
                        config)
    out, start = {}, 0
    for name in names:
        out[name] = whole.slice(start, splits[name].num_rows)
        start += splits[name].num_rows
    return out


def history_columns(config: RunConfig) -> dict[str, list[str]]:
    """Every ``[[history]]`` column of the config, grouped by the entity it describes."""
    out: dict[str, list[str]] = {}
    for spec in config.history:
        for window in spec.windows:
            out.setdefault(spec.entity, []).extend(spec.columns(window))
    return out


def next_day(days: pa.ChunkedArray | pa.Array) -> object:
    """A day value that sorts after every day of the column: the day after its last."""
    last = pc.max(days).as_py()
    if isinstance(last, str):
        return (dt.date.fromisoformat(last) + dt.timedelta(days=1)).isoformat()
    return last + 1


def history_as_of_end(table: pa.Table, config: RunConfig) -> pa.Table:
    """``table`` with every history column replaced, on each row, by the value its key would
    read on the day after the table's last day: what a service built from these logs knows.

    A row's own history stops the day before it (``add_history``), so a key's latest row misses
    its own last day; a service that serves it as is lags the training rows of the next day.
    Computed as ``add_history`` over the table plus one label-less row per key on that next day.
    """
    day = config.data.day_column
    columns = {entity: names for entity, names in history_columns(config).items()
               if {entity, day, *names} <= set(table.column_names)}
    if not columns or not table.num_rows:
        return table
    after = next_day(table[day])
    extra = []
    for entity in columns:
        keys = pc.unique(table[entity].combine_chunks().drop_null())
        extra.append(pa.table({entity: keys, day: pa.array([after] * len(keys),
                                                            table.schema.field(day).type)}))
    computed = [c for cols in columns.values() for c in cols]
    base = table.drop_columns([c for c in computed if c in table.column_names])
    whole = add_history(pa.concat_tables([base, *extra], promote_options="permissive"), config)
    start = table.num_rows
    for entity, entity_columns in columns.items():
        rows = whole.slice(start, extra.pop(0).num_rows)
        start += rows.num_rows
        at = pc.index_in(table[entity], value_set=rows[entity].combine_chunks())
        for name in entity_columns:
            values = rows[name].combine_chunks().take(at)
            table = table.set_column(table.column_names.index(name), name, values)
    return table

"""The run's data from its one source: train / valid / test tables, history added, days chosen.

Every command that reads a config's data (``train``, ``evaluate``, ``build-service``) goes
through ``load_splits``, so they cannot read different data. The source is exactly one of
``data.dataset`` (a bundled protocol), ``data.path`` (logs of many days) or ``data.train`` (with
``data.valid`` / ``data.test``: a file list per split); the config refuses two.

Days are chosen by value, ``train_days = "2022-04-08..2022-04-17"`` or a list of days and
ranges, matched against ``data.day_column`` (ISO dates match ``2022-04-08``, ``20220408`` and
date columns alike). ``valid_fraction`` holds out a share of the training *requests*, chosen by
a stable hash of the request id, so no request straddles training and validation and the
choice never depends on row order or on the process.
"""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.config import ConfigError, RunConfig, day_ranges
from watchnext.data.datasets import load_dataset
from watchnext.data.errors import DataError
from watchnext.data.hashing import hash_strings
from watchnext.data.history import split_history
from watchnext.data.io import read_tables, where
from watchnext.data.vocab import _as_strings

SPLITS = ("train", "valid", "test")
_FRACTION_RESOLUTION = 1 << 32


def load_splits(config: RunConfig) -> dict[str, pa.Table]:
    """``train`` (always), ``valid`` and ``test`` (where the config gives them)."""
    d = config.data
    if d.dataset:
        splits = load_dataset(d.dataset, config)
    elif d.path:
        splits = split_history({"train": read_tables(list(d.path))}, config)
    elif d.train:
        splits = split_history({s: read_tables(list(getattr(d, s))) for s in SPLITS
                                if getattr(d, s)}, config)
    else:
        raise ConfigError("data: no data source; set data.dataset, data.path or data.train")
    if d.train_days or d.valid_days or d.test_days:
        splits = split_by_days(splits, config)
    if d.valid_fraction:
        if "valid" in splits:
            raise ConfigError(f"data.valid_fraction: the source {d.source} already has a "
                              "validation split; drop one")
        splits["train"], splits["valid"] = hold_out_requests(
            splits["train"], d.request_column, d.valid_fraction)
    return splits


def with_history(tables: dict[str, pa.Table], config: RunConfig) -> dict[str, pa.Table]:
    """Explicit tables (e.g. files given on the command line) with the config's history added."""
    return split_history(tables, config)


def split_by_days(splits: dict[str, pa.Table], config: RunConfig) -> dict[str, pa.Table]:
    """All rows of the source, cut by ``train_days`` / ``valid_days`` / ``test_days``; training
    defaults to every day the other two do not take."""
    d = config.data
    rows = pa.concat_tables(list(splits.values()), promote_options="permissive")
    keys = day_values(rows, d.day_column, _kind(config))
    masks = {s: _in_ranges(keys, day_ranges(getattr(d, f"{s}_days"), f"data.{s}_days"))
             for s in SPLITS if getattr(d, f"{s}_days")}
    if "train" not in masks:
        masks["train"] = ~np.logical_or.reduce([np.zeros(len(keys), bool), *masks.values()])
    out = {}
    for split in SPLITS:
        if split not in masks:
            continue
        if not masks[split].any():
            show = _show if _kind(config) is datetime.date else str
            raise DataError(f"data.{split}_days selects no rows (the log's days run from "
                            f"{show(keys.min())} to {show(keys.max())})", column=d.day_column)
        out[split] = rows.filter(pa.array(masks[split]))
    return out


def day_values(table: pa.Table, column: str, kind: type) -> np.ndarray:
    """Each row's day as an int: a date's ordinal (``kind`` date) or the day number itself."""
    if column not in table.column_names:
        file, _ = where(table, 0) if table.num_rows else ("<table>", None)
        raise DataError("required column is missing (data.day_column)", file=file, column=column)
    data = table[column]
    if kind is int:
        if not pa.types.is_integer(data.type):
            raise DataError(f"days are chosen by number but the column holds {data.type}",
                            file=where(table, 0)[0], column=column)
        return pc.fill_null(data, -(1 << 62)).to_numpy().astype(np.int64)
    if pa.types.is_date(data.type) or pa.types.is_timestamp(data.type):
        days = pc.cast(pc.cast(data, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
        return days.astype(np.int64) + datetime.date(1970, 1, 1).toordinal()
    values, inverse = np.unique(_as_strings(data).to_numpy(zero_copy_only=False).astype(str),
                                return_inverse=True)
    ordinals = np.array([_ordinal(str(v), table, column, inverse, i) for i, v in enumerate(values)],
                        dtype=np.int64)
    return ordinals[inverse.reshape(-1)]


def hold_out_requests(table: pa.Table, column: str, fraction: float
                      ) -> tuple[pa.Table, pa.Table]:
    """(train, valid): every row of a request goes to the same side, by a hash of its id."""
    if column not in table.column_names:
        file, _ = where(table, 0) if table.num_rows else ("<table>", None)
        raise DataError("required column is missing (data.request_column, for "
                        "data.valid_fraction)", file=file, column=column)
    hashed = hash_strings(_as_strings(table[column]))
    held = (hashed % np.uint64(_FRACTION_RESOLUTION)) < np.uint64(fraction * _FRACTION_RESOLUTION)
    if held.all() or not held.any():
        raise DataError(f"data.valid_fraction = {fraction} leaves "
                        f"{'no training' if held.all() else 'no validation'} requests "
                        f"({table.num_rows} rows)", column=column)
    return table.filter(pa.array(~held)), table.filter(pa.array(held))


def _kind(config: RunConfig) -> type:
    d = config.data
    first = next(getattr(d, k) for k in ("train_days", "valid_days", "test_days") if getattr(d, k))
    return type(day_ranges(first, "data")[0][0])


def _in_ranges(keys: np.ndarray, ranges: list[tuple]) -> np.ndarray:
    mask = np.zeros(len(keys), bool)
    for lo, hi in ranges:
        lo, hi = (v.toordinal() if isinstance(v, datetime.date) else v for v in (lo, hi))
        mask |= (keys >= lo) & (keys <= hi)
    return mask


def _ordinal(text: str, table: pa.Table, column: str, inverse: np.ndarray, index: int) -> int:
    """``2022-04-08`` (or a longer timestamp), or ``20220408``, as a date ordinal."""
    try:
        if len(text) == 8 and text.isdigit():
            return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:])).toordinal()
        return datetime.date.fromisoformat(text[:10]).toordinal()
    except ValueError:
        file, row = where(table, int(np.argmax(inverse.reshape(-1) == index)))
        raise DataError(f"day {text!r} is not a date (YYYY-MM-DD or YYYYMMDD)", file=file,
                        column=column, row=row) from None


def _show(key: int) -> str:
    return datetime.date.fromordinal(int(key)).isoformat()

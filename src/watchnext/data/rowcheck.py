"""Row-level validation: find every bad row of a table, say why, and name the first one.

``FeatureEncoder.validate`` stops at the first problem, which is right for a table in memory but
not for ``--skip-bad-rows`` over billions of rows: that needs a mask of all bad rows and a count
per reason. These checks mirror the encoder's (labels, numeric features, positions) exactly, so a
table and a day on disk accept the same rows. A label that is null *or* NaN is an absent label
(e.g. an unanswered survey), masked out of its task's loss, in both paths. Column presence and
types are file-level problems, checked from Parquet footers in ``partitions``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from watchnext.config import FeatureSpec, RunConfig, TaskSpec
from watchnext.data import expressions
from watchnext.data.encoder import _floats
from watchnext.data.errors import DataError
from watchnext.data.io import where

REASONS = {
    "label_out_of_range": "label out of range or not finite",
    "bad_numeric": "numeric feature null, not finite or negative under log1p",
    "bad_position": "position not an integer >= 1",
    "unreadable_row_group": "row group cannot be read (corrupt data page)",
    "corrupt_file": "file is not readable Parquet",
    "missing_column": "required column missing from the file",
    "wrong_type": "column of the wrong type in the file",
}


@dataclass
class RowCheck:
    """``bad[i]`` for each row; each bad row counted once, under the first check it fails."""

    bad: np.ndarray
    reasons: Counter = field(default_factory=Counter)
    first: DataError | None = None

    @property
    def num_bad(self) -> int:
        return int(self.bad.sum())


@dataclass
class _Problem:
    reason: str
    column: str
    mask: np.ndarray
    describe: Callable[[int], str]


def check_rows(config: RunConfig, table: pa.Table) -> RowCheck:
    """All bad rows of ``table`` (which must hold the config's columns, as footers guarantee)."""
    problems: list[_Problem] = []
    for task in config.tasks:
        problems += _label_problems(table, task)
    for f in config.features:
        if f.kind == "numeric":
            problems.append(_numeric_problem(table, f))
    if config.bias.position:
        problems.append(_position_problem(table, config.bias.position))
    bad = np.zeros(table.num_rows, bool)
    counted = np.zeros(table.num_rows, bool)
    check = RowCheck(bad)
    for p in problems:
        fresh = p.mask & ~counted
        if fresh.any():
            check.reasons[p.reason] += int(fresh.sum())
            counted |= p.mask
    check.bad = counted
    if counted.any():
        i = int(np.argmax(counted))
        p = next(p for p in problems if p.mask[i])
        file, row = where(table, i)
        check.first = DataError(p.describe(i), file=file, column=p.column, row=row)
    return check


def drop_bad_rows(config: RunConfig, table: pa.Table, skip_bad: bool) -> tuple[pa.Table, Counter]:
    """``table`` without its bad rows and their count by reason; with ``skip_bad`` off, the first
    bad row's error instead (every reader applies the same rule through here)."""
    check = check_rows(config, table)
    if check.first is None:
        return table, check.reasons
    if not skip_bad:
        raise check.first
    return table.filter(pa.array(~check.bad)), check.reasons


def _label_problems(table: pa.Table, task: TaskSpec) -> list[_Problem]:
    inputs = sorted(expressions.columns(task.label))
    context = f"tasks {task.name!r}"
    columns = {c: _floats(table, c, context) for c in inputs}
    values = expressions.evaluate(task.label, columns.__getitem__)
    absent = np.zeros(table.num_rows, bool)  # null or NaN in an input: the encoder's rule
    for column in columns.values():
        absent |= np.isnan(column)
    column = inputs[0] if len(inputs) == 1 else task.label
    bad = ~absent & ~np.isfinite(values)
    if task.type == "binary":
        bad |= ~absent & np.isfinite(values) & ~np.isin(values, (0.0, 1.0))
    expected = "0 or 1" if task.type == "binary" else "a finite number"
    return [
        _Problem("label_out_of_range", column, bad,
                 lambda i: f"label for task {task.name!r} is {float(values[i]):g}, "
                           f"expected {expected}"),
    ]


def _numeric_problem(table: pa.Table, f: FeatureSpec) -> _Problem:
    context = f"feature {f.name!r}"
    values = expressions.evaluate(f.source, lambda c: _floats(table, c, context)) \
        if f.expression else _floats(table, f.source, context)
    bad = ~np.isfinite(values)
    log = f.transform.startswith("log1p")
    if log:
        bad |= values < 0
    need = "a non-negative number for log1p" if log else "a finite number"
    cols = sorted(expressions.columns(f.source))
    column = cols[0] if len(cols) == 1 else f.source

    def describe(i: int) -> str:
        found = "is null" if np.isnan(values[i]) else f"is {float(values[i]):g}"
        return f"value {found}, expected {need} (feature {f.name!r})"

    return _Problem("bad_numeric", column, bad, describe)


def _position_problem(table: pa.Table, column: str) -> _Problem:
    values = _floats(table, column, "bias.position")
    known = ~np.isnan(values)
    bad = known & ((values < 1) | (values != np.round(values)))
    return _Problem("bad_position", column, bad,
                    lambda i: f"position {float(values[i]):g} is not an integer >= 1 (1 = top slot)")

"""Position-bias audit of an impression log, independent of any model (``watchnext bias``):
which columns to read, the log as arrays, and the shape of an estimate. The estimators are in
``bias_estimators``, the report (verdicts, warnings, table, JSON, plot) in ``bias_audit_report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.config import RunConfig
from watchnext.data import expressions
from watchnext.data.errors import DataError
from watchnext.data.io import where
from watchnext.evaluate.bias import ALL_DEVICES


@dataclass(frozen=True)
class AuditColumns:
    """Which columns of the log the audit reads.

    ``randomised``: ``"all"`` (the whole log is randomised traffic), ``"COLUMN=VALUE"`` (rows
    whose COLUMN equals VALUE, e.g. ``policy=random``), ``"COLUMN"`` (a 0/1 exploration flag), or
    empty: ``policy=random`` when a ``policy`` column exists, else no randomised traffic.
    """

    click: str = "click"
    position: str = "position"
    device: str = ""
    item: str = "item_id"
    query: str = ""
    request: str = ""
    randomised: str = ""


@dataclass(frozen=True)
class AuditLog:
    """The log as arrays: one entry per impression."""

    click: np.ndarray  # [N] float64, 0/1 (or exact probabilities, to compute an estimand)
    position: np.ndarray  # [N] int64 >= 1
    device: np.ndarray  # [N] int64 index into device_names
    device_names: list[str]
    item: np.ndarray  # [N] int64, the (query, item) key
    request: np.ndarray  # [N] int64, the bootstrap unit
    randomised: np.ndarray  # [N] bool
    source: str = "<table>"

    @property
    def max_position(self) -> int:
        return int(self.position.max())

    def with_clicks(self, click: np.ndarray) -> AuditLog:
        return AuditLog(click.astype(np.float64), self.position, self.device, self.device_names,
                        self.item, self.request, self.randomised, self.source)

    def subset(self, rows: np.ndarray) -> AuditLog:
        return AuditLog(self.click[rows], self.position[rows], self.device[rows], self.device_names,
                        self.item[rows], self.request[rows], self.randomised[rows], self.source)


@dataclass(frozen=True)
class Estimate:
    """One estimator's curve for one device, relative to position 1, with 95% intervals."""

    value: dict[int, float]
    low: dict[int, float]
    high: dict[int, float]
    extra: dict[str, dict[int, float]] = field(default_factory=dict)


def columns_from_config(config: RunConfig | None, **overrides: str | None) -> AuditColumns:
    """The run config's position, device, request and click columns, then ``overrides`` (None:
    keep). The click column is the label of the first binary engagement task when that label is
    a plain column."""
    base = AuditColumns()
    if config is not None:
        clicks = [t.label for t in config.tasks if t.type == "binary" and t.group == "engagement"
                  and expressions.columns(t.label) == {t.label}]
        base = replace(base, click=clicks[0] if clicks else base.click,
                       position=config.bias.position or base.position,
                       device=config.bias.device, request=config.data.request_column)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


# ---- reading the log -------------------------------------------------------------------------

def read_log(table: pa.Table, columns: AuditColumns) -> AuditLog:
    """Validate and encode the columns the audit needs; errors name the file, column and row."""
    click = _numbers(table, columns.click)
    bad = ~np.isin(click, (0.0, 1.0))
    _fail_at(table, bad, columns.click, "click must be 0 or 1")
    position = _numbers(table, columns.position)
    bad = ~(position >= 1) | (position != np.round(position))
    _fail_at(table, bad, columns.position, "position must be an integer >= 1 (1 = top slot)")
    if columns.device:
        devices = pc.fill_null(pc.cast(_column(table, columns.device), pa.string()), "(null)")
        names, device = _codes(devices)
    else:
        names, device = [ALL_DEVICES], np.zeros(table.num_rows, dtype=np.int64)
    item = _ids(table, columns.item)
    if columns.query:  # the (query, item) pair as one key
        item = np.unique(np.stack([_ids(table, columns.query), item]), axis=1,
                         return_inverse=True)[1].reshape(-1)
    request = _ids(table, columns.request) if columns.request else \
        np.arange(table.num_rows, dtype=np.int64)
    source = where(table, 0)[0] if table.num_rows else "<table>"
    return AuditLog(click, position.astype(np.int64), device, names, item, request,
                    randomised_rows(table, columns.randomised), source)


def randomised_rows(table: pa.Table, spec: str) -> np.ndarray:
    """The rows of randomised traffic (see ``AuditColumns.randomised``)."""
    n = table.num_rows
    if spec == "all":
        return np.ones(n, dtype=bool)
    if not spec:
        if "policy" not in table.column_names:
            return np.zeros(n, dtype=bool)
        spec = "policy=random"
    column, _, value = spec.partition("=")
    data = _column(table, column)
    if value:
        rows = pc.fill_null(pc.equal(pc.cast(data, pa.string()), value), False)
    else:
        rows = pc.fill_null(pc.cast(data, pa.bool_()), False)
    rows = rows.to_numpy(zero_copy_only=False).astype(bool)
    if not rows.any():
        seen = sorted({str(v) for v in pc.unique(data).to_pylist()})[:8]
        wanted = f"equal to {value!r}" if value else "flagged (non-zero)"
        raise DataError(f"nothing randomised: no row {wanted} (values: {', '.join(seen)}); "
                        "name the randomised traffic with --randomised", file=_file(table),
                        column=column)
    return rows


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        have = ", ".join(c for c in table.column_names if not c.startswith("__"))
        raise DataError(f"required column is missing (have: {have})", file=_file(table),
                        column=name)
    return table[name]


def _numbers(table: pa.Table, name: str) -> np.ndarray:
    data = _column(table, name)
    if not (pa.types.is_integer(data.type) or pa.types.is_floating(data.type)
            or pa.types.is_boolean(data.type)):
        raise DataError(f"expected a numeric column, found {data.type}", file=_file(table),
                        column=name)
    values = pc.cast(data, pa.float64()).to_numpy(zero_copy_only=False)
    _fail_at(table, np.isnan(values), name, "value is null")
    return values


def _fail_at(table: pa.Table, bad: np.ndarray, column: str, message: str) -> None:
    if bad.any():
        file, row = where(table, int(np.argmax(bad)))
        raise DataError(message, file=file, column=column, row=row)


def _file(table: pa.Table) -> str:
    return where(table, 0)[0] if table.num_rows else "<table>"


def _ids(table: pa.Table, name: str) -> np.ndarray:
    """Dense codes of an id column; a null id is an error naming its row."""
    data = _column(table, name)
    _fail_at(table, pc.is_null(data).to_numpy(zero_copy_only=False), name, "id is null")
    return _codes(data)[1]


def _codes(values: pa.ChunkedArray | pa.Array) -> tuple[list[str], np.ndarray]:
    encoded = pc.dictionary_encode(values.combine_chunks() if isinstance(values, pa.ChunkedArray)
                                   else values)
    names = [str(v) for v in encoded.dictionary.to_pylist()]
    return names, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)

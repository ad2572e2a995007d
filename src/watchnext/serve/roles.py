"""Which entity each raw input column describes, read from the logs themselves.

At serving a row is (user, candidate video, request context), so every column the model reads
must come from one of: the user's latest known values, the candidate's latest known values, the
request (time, device), or a constant. A column belongs to the user if, within each (user, day)
with two or more rows, it never changes (user-table columns, a user's history rates); likewise for
the item. Known time columns are context. Anything else is served as a constant (its typical
value) and listed in the model's manifest so it is not a silent surprise.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.serve.context import DERIVERS

USER, ITEM, CONTEXT, DEVICE, CONSTANT = "user", "item", "context", "device", "constant"
ROLES = (USER, ITEM, CONTEXT, DEVICE, CONSTANT)
CONSTANT_ENOUGH = 0.99  # share of (key, day) groups in which a column must not change


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def constancy(table: pa.Table, key: str, day: str, column: str) -> tuple[float, int]:
    """(share of multi-row (key, day) groups where ``column`` is constant, number of such groups)."""
    if not key or key not in table.column_names or table.num_rows == 0:
        return float("nan"), 0
    group = _codes(table[key])
    if day and day in table.column_names:
        group = group * (int(_codes(table[day]).max()) + 1) + _codes(table[day])
    values = _codes(table[column])
    order = np.argsort(group, kind="stable")
    group, values = group[order], values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    sizes = np.diff(np.r_[starts, len(group)])
    same = np.minimum.reduceat(values, starts) == np.maximum.reduceat(values, starts)
    multi = sizes >= 2
    if not multi.any():
        return float("nan"), 0
    return float(same[multi].mean()), int(multi.sum())


def infer_roles(table: pa.Table, columns: list[str], *, user: str, item: str, device: str,
                day: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """A role for every column in ``columns`` (see the module docstring); overrides win."""
    overrides = dict(overrides or {})
    for column, role in overrides.items():
        if role not in ROLES:
            raise ValueError(f"role for column {column!r} must be one of {ROLES}, got {role!r}")
    roles: dict[str, str] = {}
    for column in columns:
        if column in overrides:
            roles[column] = overrides[column]
        elif column == user:
            roles[column] = USER
        elif column == item:
            roles[column] = ITEM
        elif column == device:
            roles[column] = DEVICE
        elif column in DERIVERS:
            roles[column] = CONTEXT
        else:
            roles[column] = _keyed_role(table, column, user, item, day)
    return roles


def _keyed_role(table: pa.Table, column: str, user: str, item: str, day: str) -> str:
    scores = []
    for role, key in ((USER, user), (ITEM, item)):
        share, groups = constancy(table, key, day, column)
        if not np.isnan(share) and share >= CONSTANT_ENOUGH:
            scores.append((share, groups, role))
    return max(scores)[2] if scores else CONSTANT

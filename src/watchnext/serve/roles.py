"""Which entity each raw input column describes, read from the logs themselves.

At serving a row is (user, candidate video, request context), so every column the model reads
must come from one of: the user's latest known values, the candidate's latest known values, the
request (time, device), a (user, kind of video) pair, or a constant. A column belongs to the user
if, within each (user, day) with two or more rows, it never changes (user-table columns, a user's
history rates); likewise for the item. Known time columns are context.

A *pair* column is keyed by a composite key column K that is a function of (user, item) but of
neither alone, e.g. K = "user:length-bucket" for a user's history on videos of that length: the
column is constant within (K, day). Anything else is served as a constant (its typical value) and
listed in the model's manifest so it is not a silent surprise.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.serve.context import DERIVERS

USER, ITEM, CONTEXT, DEVICE, CONSTANT = "user", "item", "context", "device", "constant"
ROLES = (USER, ITEM, CONTEXT, DEVICE, CONSTANT)
PAIR = "pair:"  # role prefix: "pair:K" for a column keyed by the composite key column K
CONSTANT_ENOUGH = 0.99  # share of (key, day) groups in which a column must not change
MIN_GROUPS = 10  # multi-row groups needed before a pair key counts as evidence


def pair_key(role: str) -> str | None:
    """K for a ``pair:K`` role, else None."""
    return role[len(PAIR):] if role.startswith(PAIR) else None


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def constancy(table: pa.Table, key: str | list[str], day: str, column: str) -> tuple[float, int]:
    """(share of multi-row (key, day) groups where ``column`` is constant, number of such groups).

    ``key`` may be several columns (their combination is the group).
    """
    keys = [key] if isinstance(key, str) else list(key)
    if not keys or not all(k and k in table.column_names for k in keys) or table.num_rows == 0:
        return float("nan"), 0
    if day and day in table.column_names:
        keys.append(day)
    group = np.zeros(table.num_rows, np.int64)
    for k in keys:
        codes = _codes(table[k])
        group = np.unique(group * (int(codes.max()) + 1) + codes, return_inverse=True)[1]
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
    pairs: list[str] | None = None
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
            if roles[column] == CONSTANT and user and item:
                if pairs is None:
                    pairs = pair_keys(table, user, item, set(columns))
                roles[column] = _pair_role(table, column, pairs, day)
    return roles


def _keyed_role(table: pa.Table, column: str, user: str, item: str, day: str) -> str:
    scores = []
    for role, key in ((USER, user), (ITEM, item)):
        share, groups = constancy(table, key, day, column)
        if not np.isnan(share) and share >= CONSTANT_ENOUGH:
            scores.append((share, groups, role))
    return max(scores)[2] if scores else CONSTANT


def pair_keys(table: pa.Table, user: str, item: str, skip: set[str]) -> list[str]:
    """Id-like columns that are a function of (user, item) but of neither alone."""
    found = []
    for column in table.column_names:
        kind = table.schema.field(column).type
        if column in skip or column.startswith("__") or not (
                pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_integer(kind)):
            continue
        share, groups = constancy(table, [user, item], "", column)
        if groups < MIN_GROUPS or not share >= CONSTANT_ENOUGH:
            continue
        if any(constancy(table, key, "", column)[0] >= CONSTANT_ENOUGH for key in (user, item)):
            continue
        found.append(column)
    return found


def _pair_role(table: pa.Table, column: str, keys: list[str], day: str) -> str:
    scores = []
    for key in keys:
        share, groups = constancy(table, key, day, column)
        if groups >= MIN_GROUPS and share >= CONSTANT_ENOUGH:
            scores.append((groups, key))
    return PAIR + max(scores)[1] if scores else CONSTANT

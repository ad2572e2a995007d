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


class Groups:
    """Constancy tests on one table, with column codes and group ids computed once each."""

    def __init__(self, table: pa.Table):
        self.table = table
        self._codes: dict[str, np.ndarray] = {}
        self._groups: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def codes(self, column: str) -> np.ndarray:
        if column not in self._codes:
            encoded = pc.dictionary_encode(self.table[column].combine_chunks(),
                                           null_encoding="encode")
            self._codes[column] = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        return self._codes[column]

    def _grouping(self, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row order by group, start of each group in that order, multi-row group mask)."""
        if keys not in self._groups:
            group = np.zeros(self.table.num_rows, np.int64)
            for k in keys:
                codes = self.codes(k)
                group = np.unique(group * (int(codes.max()) + 1) + codes, return_inverse=True)[1]
            order = np.argsort(group, kind="stable")
            starts = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]
            multi = np.diff(np.r_[starts, len(group)]) >= 2
            self._groups[keys] = (order, starts, multi)
        return self._groups[keys]

    def constancy(self, key: str | list[str], day: str, column: str) -> tuple[float, int]:
        """(share of multi-row (key, day) groups where ``column`` is constant, how many groups).

        ``key`` may be several columns (their combination is the group).
        """
        keys = [key] if isinstance(key, str) else list(key)
        names = self.table.column_names
        if not keys or not all(k and k in names for k in keys) or self.table.num_rows == 0:
            return float("nan"), 0
        if day and day in names:
            keys.append(day)
        order, starts, multi = self._grouping(tuple(keys))
        if not multi.any():
            return float("nan"), 0
        values = self.codes(column)[order]
        same = np.minimum.reduceat(values, starts) == np.maximum.reduceat(values, starts)
        return float(same[multi].mean()), int(multi.sum())


def constancy(table: pa.Table, key: str | list[str], day: str, column: str) -> tuple[float, int]:
    """``Groups(table).constancy(...)`` for a one-off question."""
    return Groups(table).constancy(key, day, column)


def infer_roles(table: pa.Table, columns: list[str], *, user: str, item: str, device: str,
                day: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """A role for every column in ``columns`` (see the module docstring); overrides win."""
    overrides = dict(overrides or {})
    for column, role in overrides.items():
        if role not in ROLES:
            raise ValueError(f"role for column {column!r} must be one of {ROLES}, got {role!r}")
    roles: dict[str, str] = {}
    groups = Groups(table)
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
            roles[column] = _keyed_role(groups, column, user, item, day)
            if roles[column] == CONSTANT and user and item:
                if pairs is None:
                    pairs = pair_keys(groups, user, item, set(columns))
                roles[column] = _pair_role(groups, column, pairs, day)
    return roles


def _keyed_role(groups: Groups, column: str, user: str, item: str, day: str) -> str:
    scores = []
    for role, key in ((USER, user), (ITEM, item)):
        share, count = groups.constancy(key, day, column)
        if not np.isnan(share) and share >= CONSTANT_ENOUGH:
            scores.append((share, count, role))
    return max(scores)[2] if scores else CONSTANT


def pair_keys(groups: Groups, user: str, item: str, skip: set[str]) -> list[str]:
    """Id-like columns that are a function of (user, item) but of neither alone."""
    table = groups.table
    found = []
    for column in table.column_names:
        kind = table.schema.field(column).type
        if column in skip or column.startswith("__") or not (
                pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_integer(kind)):
            continue
        share, count = groups.constancy([user, item], "", column)
        if count < MIN_GROUPS or not share >= CONSTANT_ENOUGH:
            continue
        if any(groups.constancy(key, "", column)[0] >= CONSTANT_ENOUGH for key in (user, item)):
            continue
        found.append(column)
    return found


def _pair_role(groups: Groups, column: str, keys: list[str], day: str) -> str:
    scores = []
    for key in keys:
        share, count = groups.constancy(key, day, column)
        if count >= MIN_GROUPS and share >= CONSTANT_ENOUGH:
            scores.append((count, key))
    return PAIR + max(scores)[1] if scores else CONSTANT

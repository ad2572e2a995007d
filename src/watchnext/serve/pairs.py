"""Pair features: columns keyed by (user, kind of video), such as a user's history on videos of
one length class.

The logs hold such a column next to its key K (e.g. ``user_length = "4854:3"``) but serving sees
only (user, candidate), so the kind of each video is learned from the logs: two videos are of the
same kind when some user has the same K for both. Kinds are the connected components of that
relation (min-label propagation, vectorised). Two videos land in one kind only if the logs prove
it, so a kind is never wrong, though a rarely watched video may sit alone in its own kind; a
(user, kind) never seen is served the cold-start value, like an unknown user.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

USER, KIND = "__user__", "__kind__"


def _codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return pc.dictionary_encode(column, null_encoding="encode").indices.to_numpy(
        zero_copy_only=False).astype(np.int64)


def item_kinds(items: np.ndarray, groups: np.ndarray, n_items: int) -> np.ndarray:
    """Component id per item, where items sharing a group (one user's K value) are connected."""
    label = np.arange(n_items)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    while True:
        group_min = np.full(n_groups, n_items)
        np.minimum.at(group_min, groups, label[items])
        new = label.copy()
        np.minimum.at(new, items, group_min[groups])
        if np.array_equal(new, label):
            return np.unique(label, return_inverse=True)[1]
        label = new


class PairTable:
    """Latest values of K-keyed columns per (user, kind), and each known video's kind."""

    def __init__(self, key: str, kinds: pa.Table, values: pa.Table):
        self.key = key
        self.kinds, self.values = kinds, values  # (item, kind) and (USER, KIND, columns...)
        self.item_kind = dict(zip(kinds["item"].to_pylist(), kinds["kind"].to_pylist(),
                                  strict=True))
        self.rows: dict[str, dict[int, int]] = {}
        for row, (user, kind) in enumerate(zip(values[USER].to_pylist(),
                                               values[KIND].to_pylist(), strict=True)):
            self.rows.setdefault(user, {})[kind] = row
        self.representatives = _first_per_kind(kinds)

    @classmethod
    def build(cls, ordered: pa.Table, key: str, user: str, item: str, columns: list[str]
              ) -> PairTable:
        """From logs sorted by time: kinds of videos, then each (user, kind)'s last row."""
        rows = ordered.filter(pc.and_(pc.and_(pc.is_valid(ordered[user]), pc.is_valid(
            ordered[item])), pc.is_valid(ordered[key])))
        encoded = pc.dictionary_encode(pc.cast(rows[item], pa.string()).combine_chunks())
        item_codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        dictionary = encoded.dictionary
        n_items = len(dictionary)
        user_codes = _codes(rows[user])
        group = np.unique(user_codes * (int(_codes(rows[key]).max()) + 1) + _codes(rows[key]),
                          return_inverse=True)[1]
        kind_of_item = item_kinds(item_codes, group, n_items)
        kinds = pa.table({"item": dictionary, "kind": pa.array(kind_of_item, pa.int64())})
        row_kind = kind_of_item[item_codes]
        pair = user_codes * (int(kind_of_item.max()) + 1 if n_items else 1) + row_kind
        _, last_reversed = np.unique(pair[::-1], return_index=True)
        last = np.sort(len(pair) - 1 - last_reversed)
        taken = rows.take(pa.array(last))
        values = {USER: pc.cast(taken[user], pa.string()),
                  KIND: pa.array(row_kind[last], pa.int64())}
        values.update({c: taken[c] for c in columns})
        return cls(key, kinds, pa.table(values))

    def row(self, user_id: str, item_id: str) -> int | None:
        kind = self.item_kind.get(item_id)
        return None if kind is None else self.rows.get(user_id, {}).get(kind)

    def save(self, directory: Path, name: str) -> dict[str, str]:
        pq.write_table(self.kinds, directory / f"{name}_kinds.parquet")
        pq.write_table(self.values, directory / f"{name}_values.parquet")
        return {"key": self.key, "kinds": f"{name}_kinds.parquet",
                "values": f"{name}_values.parquet"}

    @classmethod
    def load(cls, directory: Path, entry: dict[str, str]) -> PairTable:
        return cls(entry["key"], pq.read_table(directory / entry["kinds"]),
                   pq.read_table(directory / entry["values"]))


def _first_per_kind(kinds: pa.Table) -> dict[int, str]:
    out: dict[int, str] = {}
    for item, kind in zip(kinds["item"].to_pylist(), kinds["kind"].to_pylist(), strict=True):
        out.setdefault(kind, item)
    return out

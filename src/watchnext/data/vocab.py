"""Id vocabularies: fitted on training data with a minimum count, unseen ids go to one OOV bucket."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MISSING = 0
OOV = 1
FIRST_ID = 2


class Vocabulary:
    """Maps raw values (compared as strings) to dense indices.

    Index 0 is reserved for a missing value, 1 for out-of-vocabulary, known values start at 2
    in descending frequency, so an embedding table has ``len(vocab)`` rows.
    """

    def __init__(self, values: Sequence[str]):
        self.values = list(values)
        self._index = pa.array(self.values, pa.string())

    def __len__(self) -> int:
        return len(self.values) + FIRST_ID

    @classmethod
    def fit(cls, column: pa.ChunkedArray | pa.Array, min_count: int = 1,
            max_size: int = 0) -> Vocabulary:
        counts = pc.value_counts(_as_strings(column).drop_null())
        values, freq = counts.field("values").to_numpy(zero_copy_only=False), counts.field(
            "counts").to_numpy()
        keep = freq >= min_count
        values, freq = values[keep], freq[keep]
        order = np.lexsort((values.astype(str), -freq))
        if max_size:
            order = order[:max_size]
        return cls([str(v) for v in values[order]])

    def lookup(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Indices for a column: known values, OOV for unseen, MISSING for nulls."""
        strings = _as_strings(column)
        found = pc.fill_null(pc.index_in(strings, value_set=self._index), -1).to_numpy()
        idx = np.where(found < 0, OOV, found + FIRST_ID).astype(np.int64)
        idx[pc.is_null(strings).to_numpy(zero_copy_only=False)] = MISSING
        return idx

    def to_json(self) -> list[str]:
        return self.values

    @classmethod
    def from_json(cls, values: list[str]) -> Vocabulary:
        return cls(values)


def _as_strings(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_floating(column.type):
        column = _floats_as_ints_when_whole(column)
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _floats_as_ints_when_whole(column: pa.Array) -> pa.Array:
    """``3.0`` and ``3`` are the same id: CSV readers give floats when a column has nulls."""
    values = column.to_numpy(zero_copy_only=False)
    finite = values[~np.isnan(values)]
    if np.all(finite == np.round(finite)):
        return pc.cast(column, pa.int64())
    return column

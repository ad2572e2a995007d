"""Feature hashing for open id spaces: ids map to ``hash_buckets`` rows without a vocabulary.

A vocabulary needs a pass over all ids and memory for every distinct one; with billions of users
that is neither possible nor wanted. A hashed feature needs neither: an id's row is a stable hash of
its string form (the same string form vocabularies use, so ``3``, ``3.0`` and ``"3"`` agree), taken
modulo the bucket count. The hash is FNV-1a 64 over the UTF-8 bytes with a splitmix64 finaliser,
vectorised over Arrow's string buffers, so it is identical on every machine, process and run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.data.vocab import FIRST_ID, MISSING, Vocabulary, _as_strings

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


class HashedVocabulary:
    """Drop-in for ``Vocabulary``: 0 = missing, 1 = OOV (unused), then ``buckets`` hashed rows."""

    def __init__(self, buckets: int):
        if buckets <= 0:
            raise ValueError(f"hash_buckets must be > 0, got {buckets}")
        self.buckets = buckets
        self.values: list[str] = []

    def __len__(self) -> int:
        return self.buckets + FIRST_ID

    def lookup(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Row indices for a column: a hashed bucket per value, MISSING for nulls."""
        strings = _as_strings(column)
        idx = (hash_strings(strings) % np.uint64(self.buckets)).astype(np.int64) + FIRST_ID
        idx[pc.is_null(strings).to_numpy(zero_copy_only=False)] = MISSING
        return idx

    def to_json(self) -> dict[str, int]:
        return {"hash_buckets": self.buckets}


def vocabulary_from_json(state: Any) -> Vocabulary | HashedVocabulary:
    """Inverse of ``to_json`` for either kind: a list is a vocabulary, a dict a hashed feature."""
    if isinstance(state, dict):
        return HashedVocabulary(int(state["hash_buckets"]))
    return Vocabulary.from_json(state)


def hash_strings(strings: pa.Array) -> np.ndarray:
    """A stable 64-bit hash of every string (nulls hash as the empty string), ``[N]`` uint64."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    n = len(strings)
    offset_type = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    buffers = strings.buffers()
    offsets = np.frombuffer(buffers[1], offset_type)[strings.offset:strings.offset + n + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None and buffers[2].size \
        else np.zeros(1, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(n, _FNV_OFFSET, np.uint64)
    same_length = n == 0 or lengths.min() == lengths.max()
    for j in range(int(lengths.max(initial=0))):
        step = (h ^ np.take(data, starts + j, mode="clip")) * _FNV_PRIME
        h = step if same_length else np.where(lengths > j, step, h)
    return _splitmix64(h)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """Mixes FNV's weak low bits, so ``% buckets`` spreads similar ids (``u1``, ``u2``) evenly."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))

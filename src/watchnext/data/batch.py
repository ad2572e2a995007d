"""Columnar batches: every field is one tensor, so a minibatch is one index_select per field."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    """Encoded examples. ``labels`` is NaN where a label is absent (e.g. sparse survey answers)."""

    categorical: torch.Tensor  # [N, n_categorical] int64
    dense: torch.Tensor  # [N, n_dense] float32
    multi: torch.Tensor  # [N, n_multi, max_length] int64, 0 = padding
    position: torch.Tensor  # [N] int64, 0 = missing
    device: torch.Tensor  # [N] int64, 0 = missing
    labels: torch.Tensor  # [N, n_tasks] float32
    users: np.ndarray  # [N] user index, for grouped metrics
    requests: np.ndarray  # [N] request index, -1 when unknown

    def __len__(self) -> int:
        return self.labels.shape[0]

    def select(self, index: torch.Tensor) -> Batch:
        """The rows at ``index`` (a LongTensor), for every field at once."""
        np_index = index.numpy()
        return Batch(
            **{f.name: _take(getattr(self, f.name), index, np_index) for f in
               dataclasses.fields(self)})

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(**{f.name: getattr(self, f.name)[start:stop] for f in dataclasses.fields(self)})

    def with_position_missing(self) -> Batch:
        """Serving view: the display position is unknown before ranking."""
        return dataclasses.replace(self, position=torch.zeros_like(self.position))


def _take(value, index: torch.Tensor, np_index: np.ndarray):
    return value[np_index] if isinstance(value, np.ndarray) else value.index_select(0, index)


def iterate(batch: Batch, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None) -> Iterator[Batch]:
    """Minibatches of ``batch``; with ``shuffle``, a permutation drawn from ``generator``."""
    n = len(batch)
    if shuffle:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            yield batch.select(order[start:start + batch_size])
    else:
        for start in range(0, n, batch_size):
            yield batch.slice(start, start + batch_size)

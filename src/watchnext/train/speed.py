"""Speed switches for training, each measured in docs/performance.md ("Training speed").

- ``sparse_tables``: id tables built with ``sparse=True`` get row-wise gradients, so the Trainer
  steps them with SparseAdam and a step costs O(rows in the batch), not O(rows in the table).
- ``autocast``: ``train.precision = "bf16"`` runs the forward pass in bfloat16 (fp32 master
  weights and optimiser state). It pays only on CPUs with a bf16 matrix path (AVX512-BF16, AMX).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def sparse_tables(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the model's embedding tables that produce sparse (row-wise) gradients."""
    return [m.weight for m in model.modules()
            if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse]


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU for ``"bf16"``; a no-op for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


"""Speed switches for training, each measured in docs/performance.md ("Training speed").

- ``sparse_tables``: id tables built with ``sparse=True`` get row-wise gradients, so the Trainer
  steps them with SparseAdam and a step costs O(rows in the batch), not O(rows in the table).
- ``reuse_freed_memory``: large activations are reused from the heap, not page-faulted in
  again from the kernel at every step.
- ``autocast``: ``train.precision = "bf16"`` runs the forward pass in bfloat16 (fp32 master
  weights and optimiser state). It pays only on CPUs with a bf16 matrix path (AVX512-BF16, AMX).
"""

from __future__ import annotations

import contextlib
import ctypes

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


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


def reuse_freed_memory() -> bool:
    """Keep freed memory in the process heap instead of handing it back to the kernel.

    glibc serves blocks over 32 MiB (a [8 experts, 4096, 256] fp32 activation is exactly that)
    with a fresh ``mmap`` and returns them with ``munmap`` on free, so every training step
    page-faults and zero-fills each large activation again: measured at ~8,000 page faults per
    32 MiB tensor, the ReLU on it taking 3x longer. Served from the heap, the same pages are reused
    step after step. Peak RSS is unchanged (the peak is the peak); memory freed after the peak
    stays with the process until it exits (up to 1 GiB beyond which glibc still trims).
    Process-wide and idempotent; a no-op returning False where glibc is not the allocator.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False

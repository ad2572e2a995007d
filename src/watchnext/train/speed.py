"""Mixed precision for training (``train.precision``), measured in docs/performance.md.

``"bf16"`` runs the forward pass under bfloat16 autocast; weights and optimiser state stay fp32
(master weights) and the losses are computed in fp32. It pays only on CPUs with a bf16 matrix
path (AVX512-BF16 or AMX): elsewhere PyTorch emulates bf16 matmuls and they run far slower.
"""

from __future__ import annotations

import contextlib

import torch


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CPU for ``"bf16"``; a no-op for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


"""Process-level speed settings for training, each measured in docs/performance.md.

- ``autocast``: ``train.precision = "bf16"`` runs the forward pass under bfloat16 autocast;
  weights and optimiser state stay fp32 (master weights) and the losses are computed in fp32. On
  a CPU it pays only with a bf16 matrix path (AVX512-BF16 or AMX): elsewhere PyTorch emulates
  bf16 matmuls and they run far slower.
- ``retain_freed_memory``: ``train.retain_freed_memory`` keeps freed heap memory for reuse.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util

import torch

from watchnext.config import TrainSpec

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
_LARGEST_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` (CPU or CUDA) for ``"bf16"``; a no-op for ``"fp32"``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def apply_process_settings(train: TrainSpec) -> None:
    """The run config's process-wide settings: intra-op threads and the allocator."""
    if train.threads:
        torch.set_num_threads(train.threads)
    if train.retain_freed_memory:
        retain_freed_memory()


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for the next allocation instead of returning it to the OS.

    Why: every training step frees and re-allocates the same activation-sized tensors (32 MiB for
    8 experts x 4096 rows x 256 units). By default glibc serves such sizes with fresh ``mmap``
    pages, which the kernel faults in and zeroes 4 KiB at a time, on every step. Served from the
    heap and never trimmed, the same buffers are reused without a fault (tests/train/test_speed.py
    counts the faults; docs/performance.md has the step times). The cost is that the process keeps its
    high-water mark of heap memory until it exits. Returns False where libc has no ``mallopt``
    (not glibc) or refuses the setting; nothing changes then.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _LARGEST_TRIM_THRESHOLD))

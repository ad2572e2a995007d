"""Process-level speed settings: glibc keeps freed memory, so a re-allocation faults no pages."""

import resource
import sys

import pytest
import torch

from watchnext.train.speed import retain_freed_memory


def _faults_to_allocate_and_fill(mib: int) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = torch.empty(mib * 2**18).fill_(1.0)  # fp32: 2**18 elements per MiB
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del buffer
    return faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_a_freed_activation_sized_buffer_is_reused_without_page_faults():
    assert retain_freed_memory()
    # The heap grows over the first few uses (a small object allocated into a freed region can
    # split it, and the next buffer then extends the heap); once it holds a free region of the
    # buffer's size, re-allocations fault nothing. Without the setting every one faults in full.
    faults = [_faults_to_allocate_and_fill(48) for _ in range(8)]
    pages = 48 * 2**20 // 4096
    assert min(faults[-3:]) < pages // 20, f"{faults} page faults re-allocating {pages} pages"


def test_retain_freed_memory_is_idempotent():
    assert retain_freed_memory() == retain_freed_memory()

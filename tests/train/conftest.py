"""Training entry points apply the run's process settings (threads): restore them after each test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _keep_thread_count():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

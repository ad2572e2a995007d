"""watchnext: a multitask watch-next ranker (MMoE + shallow tower) from logs to a served model."""

import os

# Large CPU tensors on transparent huge pages: each step's fresh 32 MiB activations then fault in
# 2 MiB pages, not 4 KiB ones (measured: 528 instead of 8,193 page faults per ReLU of a
# [8, 4096, 256] tensor; docs/performance.md, "Training speed"). PyTorch reads this once, at its
# first allocation, so it is set here, before watchnext imports torch; set it to 0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# OpenMP threads that wait sleep instead of spinning. On a shared or oversubscribed CPU a spinning
# thread burns the core its partner needs (measured: training steps 4x slower with 2 threads on a
# loaded 2-core machine). libgomp reads this when torch loads it, hence here; override to opt out.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from watchnext.api import Ranker
from watchnext.config import ConfigError, RunConfig, config_from_dict, load_config
from watchnext.data.errors import DataError
from watchnext.model.score import combined_score
from watchnext.train.checkpoint import CheckpointError

__all__ = ["CheckpointError", "ConfigError", "DataError", "Ranker", "RunConfig", "combined_score",
           "config_from_dict", "load_config"]
__version__ = "0.1.0"

"""watchnext: a multitask watch-next ranker (MMoE + shallow tower) from logs to a served model."""

import os

# OpenMP threads that wait sleep instead of spinning. On a shared or oversubscribed CPU a spinning
# thread burns the core its partner needs (measured with two busy processes beside a 2-thread
# training run: 2.8x faster steps with PASSIVE; on a quiet machine 0.98x, i.e. no cost worth
# noting; docs/performance.md, "Training speed"). libgomp reads this when torch loads it, hence
# here, before watchnext imports torch; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from watchnext.api import Ranker
from watchnext.artifacts.checkpoint import CheckpointError
from watchnext.config import ConfigError, RunConfig, config_from_dict, load_config
from watchnext.data.errors import DataError
from watchnext.model.score import combined_score

__all__ = ["CheckpointError", "ConfigError", "DataError", "Ranker", "RunConfig", "combined_score",
           "config_from_dict", "load_config"]
__version__ = "0.1.0"

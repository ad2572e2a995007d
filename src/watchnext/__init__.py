"""watchnext: a multitask watch-next ranker (MMoE + shallow tower) from logs to a served model."""

from watchnext.api import Ranker
from watchnext.config import ConfigError, RunConfig, config_from_dict, load_config
from watchnext.data.errors import DataError
from watchnext.model.score import combined_score
from watchnext.train.checkpoint import CheckpointError

__all__ = ["CheckpointError", "ConfigError", "DataError", "Ranker", "RunConfig", "combined_score",
           "config_from_dict", "load_config"]
__version__ = "0.1.0"

"""watchnext: a multitask watch-next ranker (MMoE + shallow tower) from logs to a served model.

The names below are imported on first use (PEP 562), so ``import watchnext`` (or any of its
subpackages, e.g. serving) loads neither torch nor training until something asks for them, and
importing the package changes no process-wide setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from watchnext.lazy import lazy_exports

if TYPE_CHECKING:
    from watchnext.api import Ranker
    from watchnext.artifacts.checkpoint import CheckpointError
    from watchnext.config import ConfigError, RunConfig, config_from_dict, load_config
    from watchnext.data.errors import DataError
    from watchnext.model.score import combined_score

_EXPORTS = {
    "Ranker": "watchnext.api",
    "CheckpointError": "watchnext.artifacts.checkpoint",
    "ConfigError": "watchnext.config",
    "RunConfig": "watchnext.config",
    "config_from_dict": "watchnext.config",
    "load_config": "watchnext.config",
    "DataError": "watchnext.data.errors",
    "combined_score": "watchnext.model.score",
}
__all__ = ["CheckpointError", "ConfigError", "DataError", "Ranker", "RunConfig", "combined_score",
           "config_from_dict", "load_config"]
__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

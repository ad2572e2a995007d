"""Run the service with uvicorn: load the registry's model first, then listen on host:port.

The server's log (uvicorn's format, on stderr) includes the ``watchnext`` loggers, so every model
load, reload and refusal is there with its version, not only in ``/metrics``.
"""

from __future__ import annotations

import copy
import logging.config
from pathlib import Path
from typing import Any

import torch
import uvicorn
from uvicorn.config import LOGGING_CONFIG

from watchnext.serve.app import create_app
from watchnext.serve.registry import ModelRegistry
from watchnext.serve.service import BackendChoice


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``watchnext`` loggers on the same handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["watchnext"] = {"handlers": ["default"], "level": level.upper(),
                                      "propagate": False}
    return config


def run_server(root: str | Path, host: str = "127.0.0.1", port: int = 8000,
               version: str | None = None, backend: BackendChoice = "auto", threads: int = 1,
               log_level: str = "info") -> None:
    """Serve ``root`` (a model directory or a registry of them) until interrupted.

    ``threads`` bounds each inference's intra-op threads (torch and ONNX Runtime): requests
    already run concurrently, and on a small machine more threads per request only contend.
    """
    torch.set_num_threads(threads)
    logging_config = log_config(log_level)
    logging.config.dictConfig(logging_config)
    registry = ModelRegistry(root, backend=backend, threads=threads)
    registry.load(version)
    uvicorn.run(create_app(registry), host=host, port=port, log_level=log_level,
                log_config=logging_config, access_log=False)

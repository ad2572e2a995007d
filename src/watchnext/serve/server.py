"""Run the service with uvicorn: load the registry's model first, then listen on host:port."""

from __future__ import annotations

from pathlib import Path

import torch
import uvicorn

from watchnext.serve.app import create_app
from watchnext.serve.registry import ModelRegistry
from watchnext.serve.service import BackendChoice


def run_server(root: str | Path, host: str = "127.0.0.1", port: int = 8000,
               version: str | None = None, backend: BackendChoice = "auto", threads: int = 1,
               log_level: str = "info") -> None:
    """Serve ``root`` (a model directory or a registry of them) until interrupted.

    ``threads`` bounds each inference's intra-op threads (torch and ONNX Runtime): requests
    already run concurrently, and on a small machine more threads per request only contend.
    """
    torch.set_num_threads(threads)
    registry = ModelRegistry(root, backend=backend, threads=threads)
    registry.load(version)
    uvicorn.run(create_app(registry), host=host, port=port, log_level=log_level,
                access_log=False)

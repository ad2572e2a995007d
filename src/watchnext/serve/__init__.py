"""Serving: a model directory (ranker + retrieval + feature store + ONNX), a registry of
versions with hot reload, and the HTTP service around them.

The names below are imported on first use (PEP 562), so ``watchnext.serve.commands`` and the
one-off ``recommend`` command do not pay for FastAPI and the web stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"create_app": "app", "ModelDirError": "model_dir", "build_model_dir": "model_dir",
            "read_manifest": "model_dir", "ModelRegistry": "registry", "RankedItem": "service",
            "Ranking": "service", "ServingModel": "service"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

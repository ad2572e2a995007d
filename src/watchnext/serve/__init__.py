"""Serving: a model directory (ranker + retrieval + feature store + ONNX), a registry of
versions with hot reload, and the HTTP service around them.

The names below are imported on first use (PEP 562): the HTTP parts need the ``serve`` extra
(fastapi, uvicorn, onnxruntime, faiss), and ``watchnext.serve.commands`` must import without it
so that a plain install's ``watchnext`` command starts and can say which extra is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from watchnext.lazy import lazy_exports

if TYPE_CHECKING:
    from watchnext.serve.app import create_app
    from watchnext.serve.model_dir import ModelDirError, build_model_dir, read_manifest
    from watchnext.serve.registry import ModelRegistry
    from watchnext.serve.service import RankedItem, Ranking, ServingModel

_EXPORTS = {
    "create_app": "watchnext.serve.app",
    "ModelDirError": "watchnext.serve.model_dir",
    "build_model_dir": "watchnext.serve.model_dir",
    "read_manifest": "watchnext.serve.model_dir",
    "ModelRegistry": "watchnext.serve.registry",
    "RankedItem": "watchnext.serve.service",
    "Ranking": "watchnext.serve.service",
    "ServingModel": "watchnext.serve.service",
}
__all__ = ["ModelDirError", "ModelRegistry", "RankedItem", "Ranking", "ServingModel",
           "build_model_dir", "create_app", "read_manifest"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""Serving: a model directory (ranker + retrieval + feature store + ONNX), a registry of
versions with hot reload, and the HTTP service around them."""

from watchnext.serve.app import create_app
from watchnext.serve.model_dir import ModelDirError, build_model_dir, read_manifest
from watchnext.serve.registry import ModelRegistry
from watchnext.serve.service import RankedItem, Ranking, ServingModel

__all__ = ["ModelDirError", "ModelRegistry", "RankedItem", "Ranking", "ServingModel",
           "build_model_dir", "create_app", "read_manifest"]

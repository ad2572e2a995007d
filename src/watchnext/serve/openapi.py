"""The OpenAPI document, with the served model's devices as the request's ``device`` enum.

What a request may name as its device depends on the model being served, so the document is
rebuilt when another model (version or device list) is swapped in; the rest is FastAPI's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from watchnext.serve.registry import ModelRegistry
from watchnext.serve.schemas import MAX_DEVICE_LENGTH

REQUESTS_WITH_DEVICE = ("WatchNextRequest", "ScoreRequest")


def device_openapi(app: FastAPI, registry: ModelRegistry) -> Callable[[], dict[str, Any]]:
    """A replacement for ``app.openapi``; the base document is built once, patched per model."""
    base: dict[str, Any] = {}
    cached: dict[tuple[str, ...] | None, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        if not base:
            base.update(get_openapi(title=app.title, version=app.version, summary=app.summary,
                                    description=app.description, routes=app.routes))
        current = registry.current
        key = None if current is None else (current.version, *current.devices)
        if key not in cached:
            cached.clear()
            cached[key] = _with_devices(base, current.devices if current else [])
        return cached[key]

    return openapi


def _with_devices(base: dict[str, Any], devices: list[str]) -> dict[str, Any]:
    """``device`` limited to the model's devices; a model with none accepts (and ignores) any."""
    allowed = [d for d in devices if 1 <= len(d) <= MAX_DEVICE_LENGTH]
    if not allowed:
        return base
    schema = copy.deepcopy(base)
    for name in REQUESTS_WITH_DEVICE:
        field = schema["components"]["schemas"][name]["properties"]["device"]
        field["anyOf"] = [{"type": "string", "enum": allowed}, {"type": "null"}]
    return schema

"""The HTTP service (FastAPI): watch-next, scoring, model info, health, metrics, hot reload, the
web page, and API docs whose assets are served locally (they work offline).

Client errors never surface as 500s: bodies are size-limited before parsing, validated against
the schemas (422 naming the field), unknown users and videos take the cold-start path, and an
admin reload that names a broken model is refused with the old model still serving. The routes
live in ``serve.routers``; what they depend on (registry, model, admin check) in
``serve.dependencies``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

import watchnext
from watchnext.serve.dependencies import ADMIN_TOKEN_ENV
from watchnext.serve.metrics import Metrics
from watchnext.serve.middleware import BodyLimit, Observe
from watchnext.serve.openapi import device_openapi
from watchnext.serve.registry import ModelRegistry
from watchnext.serve.routers import admin, model, ops, page, score, watch_next

MAX_BODY_BYTES = 256 * 1024
log = logging.getLogger("watchnext.serve")


def create_app(registry: ModelRegistry, *, admin_token: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The service around a registry (load a model into it first; /readyz says 503 until then).

    ``admin_token`` defaults to the ``WATCHNEXT_ADMIN_TOKEN`` environment variable; without
    one, the admin endpoints answer 403.
    """
    app = FastAPIOffline(
        title="watchnext", version=watchnext.__version__,
        summary="Watch-next recommendations: candidate retrieval + multitask ranking.",
        description="Candidates pooled from co-watch, embedding, topic and popular sources are "
                    "ranked by an MMoE multitask model in serving mode (position missing) with "
                    "the weighted multiplicative score.")
    app.state.registry, app.state.metrics = registry, Metrics()
    app.state.admin_token = admin_token if admin_token is not None else os.environ.get(
        ADMIN_TOKEN_ENV, "")
    for router in (watch_next, score, model, ops, admin, page):
        app.include_router(router.router)
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _crashed)
    app.openapi = device_openapi(app, registry)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(Observe, metrics=app.state.metrics)
    return app


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Field, message and type per error; never echoes raw input (it may not be JSON-safe)."""
    return [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in exc.errors()]


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = _validation_detail(exc)
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    return JSONResponse({"detail": detail, "message": f"{'.'.join(first['loc'])}: {first['msg']}"},
                        status_code=422)


async def _crashed(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)

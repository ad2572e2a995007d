"""The HTTP service (FastAPI): watch-next, scoring, health, metrics, hot reload and a web page.

Client errors never surface as 500s: bodies are size-limited before parsing, validated against
the schemas (422 naming the field), unknown users and videos take the cold-start path, and an
admin reload that names a broken model is refused with the old model still serving.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import watchnext
from watchnext.serve.metrics import Metrics
from watchnext.serve.model_dir import ModelDirError
from watchnext.serve.page import PAGE
from watchnext.serve.registry import ModelRegistry, ReloadInProgress, VersionNotFound
from watchnext.serve.schemas import (
    ErrorResponse,
    RankedItemOut,
    RankingResponse,
    ReloadRequest,
    ReloadResponse,
    ScoreRequest,
    WatchNextRequest,
    as_id,
)
from watchnext.serve.service import Ranking, ServingModel

ADMIN_TOKEN_ENV = "WATCHNEXT_ADMIN_TOKEN"
MAX_BODY_BYTES = 256 * 1024
log = logging.getLogger("watchnext.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ERRORS = {400: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
          422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with a 413 before anything parses them."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        await JSONResponse({"detail": f"request body too large (limit {self.limit} bytes)"},
                           status_code=413)({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class Observe:
    """Record every request's route template, status and latency in ``metrics``."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            self.metrics.observe(getattr(route, "path", "unmatched"), scope.get("method", ""),
                                 status, time.perf_counter() - start)


def _ranking_response(ranking: Ranking, user_id: str | None, video_id: str | None
                      ) -> RankingResponse:
    def finite(x: float) -> float | None:
        return x if x == x and abs(x) != float("inf") else None

    items = [RankedItemOut(rank=r, video_id=i.video_id, score=finite(i.score),
                           predictions={k: finite(v) for k, v in i.predictions.items()},
                           source=i.source, sources=i.sources, known_video=i.known_video,
                           details=i.details)
             for r, i in enumerate(ranking.items, start=1)]
    return RankingResponse(model_version=ranking.model_version, user_id=user_id, video_id=video_id,
                           known_user=ranking.known_user, known_video=ranking.known_video,
                           candidates=ranking.candidates, items=items,
                           timings_ms={k: round(v, 3) for k, v in ranking.timings_ms.items()})


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Field, message and type per error; never echoes raw input (it may not be JSON-safe)."""
    return [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in exc.errors()]


def create_app(registry: ModelRegistry, *, admin_token: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The service around a registry (load a model into it first; /readyz says 503 until then).

    ``admin_token`` defaults to the ``WATCHNEXT_ADMIN_TOKEN`` environment variable; without
    one, the admin endpoints answer 403.
    """
    token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV, "")
    metrics = Metrics()
    app = FastAPI(title="watchnext", version=watchnext.__version__,
                  summary="Watch-next recommendations: candidate retrieval + multitask ranking.",
                  description="Candidates pooled from co-watch, embedding, topic and popular "
                              "sources are ranked by an MMoE multitask model in serving mode "
                              "(position missing) with the weighted multiplicative score.")
    app.state.registry, app.state.metrics = registry, metrics
    bearer = HTTPBearer(auto_error=False)

    def model() -> ServingModel:
        current = registry.current
        if current is None:
            raise HTTPException(503, "no model loaded yet")
        return current

    def admin(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not token:
            raise HTTPException(403, f"admin endpoints are disabled: set {ADMIN_TOKEN_ENV} on "
                                     "the server")
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(),
                                                          token.encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = _validation_detail(exc)
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        return JSONResponse({"detail": detail,
                             "message": f"{'.'.join(first['loc'])}: {first['msg']}"},
                            status_code=422)

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    @app.post("/v1/watch-next", response_model=RankingResponse, responses=ERRORS,
              tags=["recommend"], summary="Recommend what to watch next")
    def watch_next(body: WatchNextRequest) -> RankingResponse:
        current = model()
        user_id, video_id = as_id(body.user_id), as_id(body.video_id)
        ranking = current.watch_next(user_id, video_id, body.device, k=body.k,
                                     exclude=[str(e) for e in body.exclude], when=body.time,
                                     details=body.details)
        _count_cold(metrics, ranking, video_id)
        return _ranking_response(ranking, user_id, video_id)

    @app.post("/v1/score", response_model=RankingResponse, responses=ERRORS, tags=["recommend"],
              summary="Rank caller-supplied candidates")
    def score(body: ScoreRequest) -> RankingResponse:
        current = model()
        user_id, video_id = as_id(body.user_id), as_id(body.video_id)
        ranking = current.score(user_id, video_id, body.device, [str(c) for c in body.candidates],
                                k=body.k, when=body.time, details=body.details)
        _count_cold(metrics, ranking, video_id)
        return _ranking_response(ranking, user_id, video_id)

    @app.get("/v1/model", tags=["model"], summary="The model being served")
    def model_info() -> dict[str, Any]:
        current = registry.current
        return current.describe() if current else {"version": None}

    @app.get("/v1/examples", tags=["model"], summary="Example users and videos (for the page)")
    def examples() -> dict[str, Any]:
        return model().store.examples

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness: a model is loaded",
             responses={503: {"model": ErrorResponse}})
    def readyz() -> dict[str, str]:
        current = model()
        return {"status": "ready", "version": current.version, "backend": current.backend.name}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics",
             response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        current = registry.current
        info = {"version": current.version, "backend": current.backend.name} if current else None
        return PlainTextResponse(metrics.render(info, registry.reloads),
                                 media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload", response_model=ReloadResponse, tags=["admin"],
              summary="Load a model version and swap it in atomically",
              responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
                         404: {"model": ErrorResponse}, 409: {"model": ErrorResponse},
                         422: {"model": ErrorResponse}},
              dependencies=[Depends(admin)])
    def reload(body: ReloadRequest | None = None) -> ReloadResponse:
        version = body.version if body else None
        serving = registry.current.version if registry.current else None
        try:
            new, previous = registry.reload(version)
        except VersionNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except ReloadInProgress as exc:
            raise HTTPException(409, str(exc)) from exc
        except ModelDirError as exc:
            raise HTTPException(422, f"model refused: {exc}; still serving {serving}") from exc
        log.info("reloaded model %s (was %s)", new.version, previous and previous.version)
        return ReloadResponse(version=new.version,
                              previous=previous.version if previous else None,
                              backend=new.backend.name)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(Observe, metrics=metrics)
    return app


def _count_cold(metrics: Metrics, ranking: Ranking, video_id: str | None) -> None:
    if not ranking.known_user:
        metrics.cold_start("user")
    if video_id is not None and not ranking.known_video:
        metrics.cold_start("video")

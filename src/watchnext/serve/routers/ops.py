"""Operations: liveness, readiness and Prometheus metrics."""

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from watchnext.serve.dependencies import MetricsDep, Model, Registry
from watchnext.serve.schemas import ErrorResponse

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: a model is loaded",
            responses={503: {"model": ErrorResponse}})
def readyz(model: Model) -> dict[str, str]:
    return {"status": "ready", "version": model.version, "backend": model.backend.name}


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
def prometheus(registry: Registry, metrics: MetricsDep) -> PlainTextResponse:
    current = registry.current
    info = {"version": current.version, "backend": current.backend.name} if current else None
    return PlainTextResponse(metrics.render(info, registry.reloads),
                             media_type="text/plain; version=0.0.4")

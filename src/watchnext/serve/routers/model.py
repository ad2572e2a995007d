"""``GET /v1/model`` and ``GET /v1/examples``: what is served, and ids to try it with."""

from fastapi import APIRouter

from watchnext.serve.dependencies import Model, Registry
from watchnext.serve.schemas import ErrorResponse, Examples, ModelInfo

router = APIRouter(tags=["model"])


@router.get("/v1/model", response_model=ModelInfo, summary="The model being served")
def model_info(registry: Registry) -> ModelInfo:
    current = registry.current
    return ModelInfo(**current.describe()) if current else ModelInfo(version=None)


@router.get("/v1/examples", response_model=Examples, responses={503: {"model": ErrorResponse}},
            summary="Example users and videos (for the page)")
def examples(model: Model) -> Examples:
    return Examples(**model.store.examples)

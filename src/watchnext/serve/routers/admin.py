"""``POST /admin/reload`` (bearer token): load a version and swap it in, or refuse it while the
old one keeps serving. The registry logs every outcome with its version."""

from fastapi import APIRouter, Depends, HTTPException

from watchnext.serve.dependencies import Registry, require_admin
from watchnext.serve.model_dir import ModelDirError
from watchnext.serve.registry import ReloadInProgress, VersionNotFound
from watchnext.serve.schemas import ErrorResponse, ReloadRequest, ReloadResponse

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post("/reload", response_model=ReloadResponse,
             summary="Load a model version and swap it in atomically",
             responses={code: {"model": ErrorResponse}
                        for code in (400, 401, 403, 404, 409, 413, 422)})
def reload(registry: Registry, body: ReloadRequest | None = None) -> ReloadResponse:
    serving = registry.current.version if registry.current else None
    try:
        new, previous = registry.reload(body.version if body else None)
    except VersionNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except ReloadInProgress as exc:
        raise HTTPException(409, str(exc)) from exc
    except ModelDirError as exc:
        raise HTTPException(422, f"model refused: {exc}; still serving {serving}") from exc
    return ReloadResponse(version=new.version, previous=previous.version if previous else None,
                          backend=new.backend.name)

"""What the routes depend on, as FastAPI dependencies (tests replace them through
``app.dependency_overrides``): the registry, the model it serves, the metrics, the admin check.

A route takes the served model once, through ``get_model``: a reload that swaps the registry's
model meanwhile does not change the one a request already holds.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from watchnext.serve.metrics import Metrics
from watchnext.serve.registry import ModelRegistry
from watchnext.serve.service import ServingModel

ADMIN_TOKEN_ENV = "WATCHNEXT_ADMIN_TOKEN"
bearer = HTTPBearer(auto_error=False)


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_model(registry: Annotated[ModelRegistry, Depends(get_registry)]) -> ServingModel:
    """The model being served; 503 until one is loaded."""
    current = registry.current
    if current is None:
        raise HTTPException(503, "no model loaded yet")
    return current


def require_admin(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """The bearer token must equal the server's admin token. No bearer token: 401, as the
    OpenAPI document's security scheme says; a token while none is configured: 403."""
    token: str = request.app.state.admin_token
    unauthorised = HTTPException(401, "missing or wrong bearer token",
                                 headers={"WWW-Authenticate": "Bearer"})
    if credentials is None:
        raise unauthorised
    if not token:
        raise HTTPException(403, f"admin endpoints are disabled: set {ADMIN_TOKEN_ENV} on the "
                                 "server")
    if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise unauthorised


def checked_device(model: ServingModel, device: str | None) -> str | None:
    """The request's device if the model knows it (or has no device input); else a 422 in
    the same form as every other validation error."""
    known = model.devices
    if device is None or not known or device in known:
        return device
    raise RequestValidationError([{
        "loc": ("body", "device"), "type": "enum",
        "msg": f"Input should be one of the devices model {model.version} knows: "
               f"{', '.join(map(repr, known))}"}])


Registry = Annotated[ModelRegistry, Depends(get_registry)]
Model = Annotated[ServingModel, Depends(get_model)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

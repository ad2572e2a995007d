"""The service's routes, one router per concern (FastAPI's "bigger applications" layout)."""

from watchnext.serve.schemas import ErrorResponse

BODY_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (400, 413, 422, 503)}

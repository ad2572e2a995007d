"""``GET /``: the demo web page (it calls the same JSON API as every other client)."""

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from watchnext.serve.page import PAGE

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    return HTMLResponse(PAGE)

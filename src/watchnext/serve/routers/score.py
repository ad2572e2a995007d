"""``POST /v1/score``: rank the caller's candidates (no retrieval), ids answered as sent."""

from fastapi import APIRouter

from watchnext.serve.dependencies import MetricsDep, Model, checked_device
from watchnext.serve.routers import BODY_ERRORS
from watchnext.serve.schemas import RankingResponse, ScoreRequest, as_id

router = APIRouter(tags=["recommend"])


@router.post("/v1/score", response_model=RankingResponse, responses=BODY_ERRORS,
             summary="Rank caller-supplied candidates")
def score(body: ScoreRequest, model: Model, metrics: MetricsDep) -> RankingResponse:
    given: dict[str, str | int] = {}
    for candidate in body.candidates:
        given.setdefault(str(candidate), candidate)
    user_id, video_id = as_id(body.user_id), as_id(body.video_id)
    ranking = model.score(user_id, video_id, checked_device(model, body.device), list(given),
                          k=body.k, when=body.time, details=body.details)
    metrics.ranked(ranking.known_user, video_id is not None and not ranking.known_video)
    return RankingResponse.of(ranking, body.user_id, body.video_id, given)

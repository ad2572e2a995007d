"""``POST /v1/watch-next``: retrieve candidates for (user, video), rank them, return the top k."""

from fastapi import APIRouter

from watchnext.serve.dependencies import MetricsDep, Model, checked_device
from watchnext.serve.routers import BODY_ERRORS
from watchnext.serve.schemas import RankingResponse, WatchNextRequest, as_id

router = APIRouter(tags=["recommend"])


@router.post("/v1/watch-next", response_model=RankingResponse, responses=BODY_ERRORS,
             summary="Recommend what to watch next")
def watch_next(body: WatchNextRequest, model: Model, metrics: MetricsDep) -> RankingResponse:
    user_id, video_id = as_id(body.user_id), as_id(body.video_id)
    ranking = model.watch_next(user_id, video_id, checked_device(model, body.device), k=body.k,
                               exclude=[str(e) for e in body.exclude], when=body.time,
                               details=body.details)
    metrics.ranked(ranking.known_user, video_id is not None and not ranking.known_video)
    return RankingResponse.of(ranking, body.user_id, body.video_id)

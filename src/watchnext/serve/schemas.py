"""Request and response bodies of the HTTP API; they are also its OpenAPI document.

The document states exactly what the server accepts (a schemathesis run in the test suite checks
it), so every constraint lives here, in a form JSON Schema can say:

- Ids are non-empty strings of at most 128 characters, or integers within ±(2**53 - 1) (the
  integers every JSON parser, JavaScript's included, reads exactly; as in JSON Schema, a number
  with a zero fraction such as 7.0 is an integer). Ids are compared as strings,
  like the model's vocabularies, and are answered with the JSON type they came in with: a
  candidate sent as 1054335349840 comes back as 1054335349840, not "1054335349840".
- Times are RFC 3339 date-times with an offset (``2022-04-18T09:00:00+08:00`` or ``...Z``) in the
  years 1971-2999, as a pattern the server checks with the same regular expression.
- The device is one the served model knows; the document lists them (see ``serve.openapi``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

from watchnext.serve.service import Ranking

MAX_K = 100
MAX_EXCLUDE = 1000
MAX_CANDIDATES = 1000
MAX_ID_LENGTH = 128
MAX_DEVICE_LENGTH = 64
SAFE_INTEGER = 2**53 - 1
YEARS = r"(197[1-9]|19[89][0-9]|2[0-9]{3})"
RFC3339 = (rf"^{YEARS}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):([0-5][0-9])"
           r":([0-5][0-9])(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):([0-5][0-9]))$")
_RFC3339 = re.compile(RFC3339)


def _integral(value: object) -> object:
    """JSON Schema counts 2.0 as an integer, so the server does too; 2.5, "2" and true are not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _integer(low: int, high: int) -> Any:
    """An integer in [low, high]; the bounds sit inside the pre-validator so that the JSON
    Schema says ``minimum``/``maximum``."""
    return Annotated[StrictInt, Field(ge=low, le=high), BeforeValidator(_integral)]


IdString = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_LENGTH)]
IdNumber = _integer(-SAFE_INTEGER, SAFE_INTEGER)
ListLength = _integer(1, MAX_K)
ScoredLength = _integer(1, MAX_CANDIDATES)
Id = IdString | IdNumber
Device = Annotated[StrictStr, Field(min_length=1, max_length=MAX_DEVICE_LENGTH)]


def _parse_time(value: object) -> dt.datetime:
    """An RFC 3339 date-time (the pattern above) as an aware datetime; nothing else passes."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("must be an RFC 3339 date-time with an offset in the years 1971-2999, "
                         "e.g. 2022-04-18T09:00:00+08:00")
    year, month, day, hour, minute, second, fraction, zone, zone_h, zone_m = match.groups()
    offset = dt.timedelta(0) if zone in "Zz" else (1 if zone[0] == "+" else -1) * dt.timedelta(
        hours=int(zone_h), minutes=int(zone_m))
    micros = int((fraction or ".")[1:7].ljust(6, "0"))
    return dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros,
                       tzinfo=dt.timezone(offset))  # raises ValueError for e.g. February 30


Time = Annotated[dt.datetime, BeforeValidator(_parse_time),
                 WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339})]


def as_id(value: str | int | None) -> str | None:
    """An id as the model's vocabularies hold it: ids are compared as strings."""
    return None if value is None else str(value)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id | None = Field(None, description="The viewer; unknown or absent = cold start.")
    video_id: Id | None = Field(None, description="The video being watched (the query video).")
    device: Device | None = Field(
        None, description="Device type, one the model knows (GET /v1/model lists them); "
                           "absent = missing. Ignored by a model without a device input.")
    time: Time | None = Field(
        None, description="Request time, RFC 3339 with an offset, years 1971-2999. Default: now. "
                          "Sets context features such as hour and weekday.")
    details: StrictBool = Field(False, description="Include the served raw video features.")


class WatchNextRequest(_Request):
    """Recommend what to watch after ``video_id`` for ``user_id``."""

    k: ListLength = Field(10, description="How many videos to return.")
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_EXCLUDE,
                              description="Video ids never to return (e.g. already watched).")


class ScoreRequest(_Request):
    """Rank caller-supplied candidates with the model (no retrieval)."""

    candidates: list[Id] = Field(
        ..., min_length=1, max_length=MAX_CANDIDATES,
        description="Video ids to score. Ids equal as strings (1 and \"1\") are one candidate, "
                    "scored once and answered as first given.")
    k: ScoredLength | None = Field(None, description="Return only the best k (default: all).")


def _finite(x: float) -> float | None:
    return x if x == x and abs(x) != float("inf") else None


class RankedItemOut(BaseModel):
    rank: int
    video_id: str | int = Field(description="As the caller sent it (/v1/score), else the "
                                            "model's id (a string).")
    score: float | None = Field(description="prod_t prediction_t ** weight_t (null if not finite)")
    predictions: dict[str, float | None] = Field(description="Per-task prediction.")
    source: str = Field(description="The candidate source that found it first ('caller' for "
                                    "/v1/score).")
    sources: list[str] = Field(description="Every source that found it.")
    known_video: bool = Field(description="False: the video is unknown (cold-start features).")
    details: dict[str, Any] | None = None


class RankingResponse(BaseModel):
    model_version: str
    user_id: str | int | None = Field(description="As sent.")
    video_id: str | int | None = Field(description="As sent.")
    known_user: bool
    known_video: bool
    candidates: int = Field(description="How many candidates were ranked.")
    items: list[RankedItemOut]
    timings_ms: dict[str, float]

    @classmethod
    def of(cls, ranking: Ranking, user_id: str | int | None, video_id: str | int | None,
           given: Mapping[str, str | int] | None = None) -> RankingResponse:
        """The response for ``ranking``; ``given`` maps an item's string id back to the value
        the caller sent, so ids keep their JSON type."""
        given = given or {}
        items = [RankedItemOut(rank=r, video_id=given.get(i.video_id, i.video_id),
                               score=_finite(i.score),
                               predictions={k: _finite(v) for k, v in i.predictions.items()},
                               source=i.source, sources=i.sources, known_video=i.known_video,
                               details=i.details)
                 for r, i in enumerate(ranking.items, start=1)]
        return cls(model_version=ranking.model_version, user_id=user_id, video_id=video_id,
                   known_user=ranking.known_user, known_video=ranking.known_video,
                   candidates=ranking.candidates, items=items,
                   timings_ms={k: round(v, 3) for k, v in ranking.timings_ms.items()})


class ModelInfo(BaseModel):
    """What any caller may know about the served model: no paths on the server's disk."""

    version: str | None = Field(description="null until a model is loaded.")
    backend: str | None = None
    backend_report: dict[str, Any] | None = None
    tasks: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list,
                               description="Accepted values of a request's device (empty: the "
                                           "model has no device input).")
    retrieval: dict[str, Any] | None = None
    users: int | None = None
    videos: int | None = None
    created: str | None = None


class ExampleUser(BaseModel):
    user_id: str
    last_video: str


class Examples(BaseModel):
    """Known users (with the last video each watched) and videos, to try the service with."""

    users: list[ExampleUser]
    videos: list[str]


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[StrictStr, Field(min_length=1, max_length=128)] | None = Field(
        None, description="Version (folder name) to load; default: the newest.")


class ReloadResponse(BaseModel):
    version: str
    previous: str | None
    backend: str


class ErrorResponse(BaseModel):
    detail: Any = Field(description="What was wrong with the request.")

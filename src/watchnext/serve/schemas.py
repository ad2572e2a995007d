"""Request and response bodies of the HTTP API (they are also its OpenAPI schema).

Ids may be strings or integers and are compared as strings, like the model's vocabularies.
Every limit is explicit so an oversized request fails validation with a 422 that names the field,
instead of costing the server.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

MAX_K = 100
MAX_EXCLUDE = 1000
MAX_CANDIDATES = 1000
EARLIEST = dt.datetime(1971, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)

IdString = Annotated[StrictStr, Field(min_length=1, max_length=128)]
IdNumber = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
Id = IdString | IdNumber
Device = Annotated[StrictStr, Field(min_length=1, max_length=64)]


def as_id(value: str | int | None) -> str | None:
    return None if value is None else str(value)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id | None = Field(None, description="The viewer; unknown or absent = cold start.")
    video_id: Id | None = Field(None, description="The video being watched (the query video).")
    device: Device | None = Field(None, description="Device type, e.g. 'android'; optional.")
    time: dt.datetime | None = Field(
        None, description="Request time (ISO 8601; naive = UTC). Default: now. Sets context "
                          "features such as hour and weekday.")
    details: StrictBool = Field(False, description="Include the served raw video features.")

    @field_validator("time")
    @classmethod
    def _time_in_range(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if not EARLIEST <= aware <= LATEST:
            raise ValueError(f"must lie between {EARLIEST.date()} and {LATEST.date()}")
        return aware


class WatchNextRequest(_Request):
    """Recommend what to watch after ``video_id`` for ``user_id``."""

    k: StrictInt = Field(10, ge=1, le=MAX_K, description="How many videos to return.")
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_EXCLUDE,
                              description="Video ids never to return (e.g. already watched).")


class ScoreRequest(_Request):
    """Rank caller-supplied candidates with the model (no retrieval)."""

    candidates: list[Id] = Field(..., min_length=1, max_length=MAX_CANDIDATES,
                                 description="Video ids to score; duplicates are scored once.")
    k: StrictInt | None = Field(None, ge=1, le=MAX_CANDIDATES,
                                description="Return only the best k (default: all).")


class RankedItemOut(BaseModel):
    rank: int
    video_id: str
    score: float | None = Field(description="prod_t prediction_t ** weight_t (null if not finite)")
    predictions: dict[str, float | None] = Field(description="Per-task prediction.")
    source: str = Field(description="The candidate source that found it first ('caller' for "
                                    "/v1/score).")
    sources: list[str] = Field(description="Every source that found it.")
    known_video: bool = Field(description="False: the video is unknown (cold-start features).")
    details: dict[str, Any] | None = None


class RankingResponse(BaseModel):
    model_version: str
    user_id: str | None
    video_id: str | None
    known_user: bool
    known_video: bool
    candidates: int = Field(description="How many candidates were ranked.")
    items: list[RankedItemOut]
    timings_ms: dict[str, float]


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

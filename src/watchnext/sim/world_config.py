"""The simulated world's parameters (``sim_world.toml``): every hidden truth, with a seed.

The defaults are the default world. They are chosen so that the world behaves like a watch-next
platform: clicks fall with the slot at a device-specific rate, the popular videos are partly
clickbait, and engagement (clicks, minutes) and satisfaction (likes, ratings) disagree about
clickbait and long videos.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchnext.config import ConfigError
from watchnext.sim.spec import build, check, positive, unit


@dataclass(frozen=True)
class DeviceSpec:
    """A device type and its examination curve: ``exam(p) = exam_top * p ** -exam_decay``."""

    name: str
    share: float
    exam_top: float = 1.0
    exam_decay: float = 1.0


def _default_devices() -> tuple[DeviceSpec, ...]:
    return (DeviceSpec("phone", 0.4, 0.95, 0.9), DeviceSpec("desktop", 0.2, 0.9, 0.6),
            DeviceSpec("tablet", 0.2, 0.95, 0.75), DeviceSpec("tv", 0.2, 1.0, 1.1))


@dataclass(frozen=True)
class UsersSpec:
    """Users: a Dirichlet interest over topics; the logs show a noisy history of it."""

    count: int = 3000
    interest_concentration: float = 0.3
    history_watches: int = 30
    activity_sigma: float = 0.8


@dataclass(frozen=True)
class VideosSpec:
    """Videos: one topic, latent quality ~ N(0, 1), log-normal duration, Beta clickbait.

    Log popularity = popularity_sigma * N(0, 1) + popularity_quality * quality
    + popularity_clickbait * clickbait: the crowd rewards clickbait too.
    """

    count: int = 1000
    duration_median_min: float = 6.0
    duration_sigma: float = 0.8
    clickbait_alpha: float = 0.6
    clickbait_beta: float = 2.5
    popularity_sigma: float = 1.0
    popularity_quality: float = 0.4
    popularity_clickbait: float = 1.5


@dataclass(frozen=True)
class BehaviourSpec:
    """How a user responds to a video in a slot.

    utility      = interest * log(T * theta_u[topic]) + quality * q_v + match * [topic = query topic]
    satisfaction = utility - clickbait_penalty * clickbait_v
    P(click | examined) = sigmoid(click_intercept + click_utility * utility + click_clickbait * cb_v)
    completion   = sigmoid(completion_intercept + completion_utility * utility + completion_noise * e)
    watch        = duration_v * completion                                  (minutes, after a click)
    P(like | click)    = sigmoid(like_intercept + like_satisfaction * satisfaction)
    P(dismiss | click) = sigmoid(dismiss_intercept - dismiss_satisfaction * satisfaction)
    rating       = clip(round(3 + rating_satisfaction * satisfaction + rating_noise * e), 1, 5),
                   answered after a click with probability survey_rate
    """

    utility_interest: float = 0.6
    utility_quality: float = 0.8
    utility_match: float = 0.6
    clickbait_penalty: float = 2.5
    click_intercept: float = -2.5
    click_utility: float = 0.8
    click_clickbait: float = 2.0
    completion_intercept: float = 0.0
    completion_utility: float = 0.8
    completion_noise: float = 1.0
    like_intercept: float = -1.5
    like_satisfaction: float = 1.0
    dismiss_intercept: float = -2.5
    dismiss_satisfaction: float = 1.0
    survey_rate: float = 0.2
    rating_satisfaction: float = 0.8
    rating_noise: float = 0.7


@dataclass(frozen=True)
class CandidatesSpec:
    """Candidate generation: ``candidates`` distinct videos per request, sampled with weight

    popularity ** popularity_power * theta_u[topic] ** interest_power * (1 + query_boost * match),
    standing in for the pooled co-watch / topic / popular generators of the first stage.
    """

    count: int = 30
    query_boost: float = 4.0
    interest_power: float = 1.0
    popularity_power: float = 0.5


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    topics: int = 20
    slots: int = 10
    start_date: str = "2024-01-01"
    users: UsersSpec = field(default_factory=UsersSpec)
    videos: VideosSpec = field(default_factory=VideosSpec)
    devices: tuple[DeviceSpec, ...] = field(default_factory=_default_devices)
    behaviour: BehaviourSpec = field(default_factory=BehaviourSpec)
    candidates: CandidatesSpec = field(default_factory=CandidatesSpec)

    @property
    def device_names(self) -> list[str]:
        return [d.name for d in self.devices]

    def date(self, day: int) -> str:
        """The calendar date of simulated day ``day`` (0-based)."""
        return (dt.date.fromisoformat(self.start_date) + dt.timedelta(days=day)).isoformat()


def world_from_dict(raw: dict[str, Any]) -> WorldConfig:
    """Build and validate a world config; ConfigError names the bad key."""
    cfg = build(WorldConfig, raw, "")
    _validate(cfg)
    return cfg


def load_world(path: str | Path) -> WorldConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read world config: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return world_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _validate(cfg: WorldConfig) -> None:
    positive(cfg.topics, "topics")
    check(cfg.topics >= 2, "topics", f"need at least 2 topics, got {cfg.topics}")
    positive(cfg.slots, "slots")
    try:
        dt.date.fromisoformat(cfg.start_date)
    except ValueError:
        raise ConfigError(f"start_date: expected YYYY-MM-DD, got {cfg.start_date!r}") from None
    u, v, b, c = cfg.users, cfg.videos, cfg.behaviour, cfg.candidates
    positive(u.count, "users.count")
    positive(u.interest_concentration, "users.interest_concentration")
    positive(u.history_watches, "users.history_watches")
    positive(u.activity_sigma, "users.activity_sigma", zero_ok=True)
    positive(v.count, "videos.count")
    positive(v.duration_median_min, "videos.duration_median_min")
    positive(v.duration_sigma, "videos.duration_sigma", zero_ok=True)
    positive(v.clickbait_alpha, "videos.clickbait_alpha")
    positive(v.clickbait_beta, "videos.clickbait_beta")
    positive(v.popularity_sigma, "videos.popularity_sigma", zero_ok=True)
    check(bool(cfg.devices), "devices", "at least one device is required")
    names = [d.name for d in cfg.devices]
    for i, d in enumerate(cfg.devices):
        check(bool(d.name) and names.index(d.name) == i, f"devices[{i}].name",
              f"must be a unique non-empty name, got {d.name!r}")
        positive(d.share, f"devices[{i}].share")
        unit(d.exam_top, f"devices[{i}].exam_top", low_open=True)
        positive(d.exam_decay, f"devices[{i}].exam_decay")
    unit(b.survey_rate, "behaviour.survey_rate")
    positive(b.completion_noise, "behaviour.completion_noise", zero_ok=True)
    positive(b.rating_noise, "behaviour.rating_noise", zero_ok=True)
    positive(b.clickbait_penalty, "behaviour.clickbait_penalty", zero_ok=True)
    check(c.count >= cfg.slots, "candidates.count",
          f"must be at least slots ({cfg.slots}), got {c.count}")
    check(c.count < v.count, "candidates.count",
          f"must be below videos.count ({v.count}), got {c.count}")
    positive(c.query_boost, "candidates.query_boost", zero_ok=True)

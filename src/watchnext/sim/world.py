"""A watch-next platform whose hidden truth is known: users, videos, requests and responses.

A request is a user (on a device) watching a query video; the first stage hands the ranker a pool
of candidates; the ranker fills ``slots`` slots; the user examines slot p with probability
``exam_device(p)``, clicks an examined candidate with its click appeal, and so on (see
``BehaviourSpec``).

Common random numbers: every random draw of a response is fixed per (request, candidate) when the
traffic is generated, before any ranker sees it. Two arms serving the same ``Traffic`` therefore
differ only through their rankings: a candidate's click, watch noise, like, dismiss and survey
answer are the same in both arms whenever it is examined, and a candidate examined in a lower slot
would also have been examined in any higher one (one uniform draw against the examination curve).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from watchnext.sim.world_config import WorldConfig

_MIN_INTEREST = 1e-3
_HERMITE_NODES = 24
_CHUNK = 2048
NOISE_FIELDS = ("exam", "click", "like", "dismiss", "survey", "watch", "rating")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Traffic:
    """One day of requests with their candidate pools and pre-drawn response noise."""

    day: int
    stream: int
    request_id: np.ndarray  # [R] int64, unique across days and streams
    user: np.ndarray  # [R]
    device: np.ndarray  # [R] index into WorldConfig.devices
    query: np.ndarray  # [R] query video
    candidates: np.ndarray  # [R, C] distinct video ids, query excluded
    noise: dict[str, np.ndarray]  # field -> [R, C]; uniforms, except watch/rating: standard normal

    @property
    def shape(self) -> tuple[int, int]:
        return self.candidates.shape

    def key(self, salt: int) -> list[int]:
        """Seed material for randomness tied to this traffic (e.g. a random policy's shuffles)."""
        return [self.stream, self.day, salt, int(self.request_id[0]) if len(self.request_id) else 0]


@dataclass
class Truth:
    """The hidden per-candidate quantities of a traffic, ``[R, C]`` each."""

    utility: np.ndarray
    satisfaction: np.ndarray
    p_click: np.ndarray  # given examined
    expected_watch: np.ndarray  # minutes, given a click
    p_like: np.ndarray  # given a click
    p_dismiss: np.ndarray  # given a click


@dataclass
class Outcomes:
    """What happened to each candidate, ``[R, C]``; ``position`` 0 = not shown."""

    position: np.ndarray
    examined: np.ndarray
    click: np.ndarray
    watch: np.ndarray  # minutes, 0 without a click
    like: np.ndarray
    dismiss: np.ndarray
    rating: np.ndarray  # 1..5, NaN unless a survey was answered


class World:
    """Draws the population once from ``config.seed``; traffic and responses from there on."""

    def __init__(self, config: WorldConfig):
        self.config = config
        rng = np.random.default_rng([config.seed, 0])
        u, v, t = config.users, config.videos, config.topics
        self.interest = np.maximum(rng.dirichlet(np.full(t, u.interest_concentration), u.count),
                                   _MIN_INTEREST)  # [U, T]
        self.interest /= self.interest.sum(1, keepdims=True)
        self.history = rng.multinomial(u.history_watches, self.interest) / u.history_watches
        shares = np.array([d.share for d in config.devices])
        self.user_device = rng.choice(len(shares), size=u.count, p=shares / shares.sum())
        activity = rng.lognormal(0.0, u.activity_sigma, u.count)
        self.activity = activity / activity.sum()
        self.topic = rng.integers(0, t, v.count)
        self.quality = rng.standard_normal(v.count)
        self.duration = v.duration_median_min * np.exp(v.duration_sigma * rng.standard_normal(v.count))
        self.clickbait = rng.beta(v.clickbait_alpha, v.clickbait_beta, v.count)
        self.log_popularity = (v.popularity_sigma * rng.standard_normal(v.count)
                               + v.popularity_quality * self.quality
                               + v.popularity_clickbait * self.clickbait)
        self.exam = self.examination_table()

    def examination_table(self) -> np.ndarray:
        """True P(examine) ``[devices, slots + 1]``; column 0 (not shown) is 0."""
        positions = np.arange(1, self.config.slots + 1, dtype=np.float64)
        curves = [d.exam_top * positions ** -d.exam_decay for d in self.config.devices]
        return np.concatenate([np.zeros((len(curves), 1)), np.array(curves)], axis=1)

    def traffic(self, day: int, requests: int, stream: int = 0) -> Traffic:
        """``requests`` requests of simulated day ``day``; ``stream`` separates independent
        traffics of the same day (e.g. training logs vs the experiment's evaluation traffic)."""
        rng = np.random.default_rng([self.config.seed, 1, stream, day])
        users = rng.choice(len(self.activity), size=requests, p=self.activity)
        query = self._query_videos(users, rng)
        c = self.config.candidates
        log_interest = np.log(self.interest[users]).astype(np.float32)  # [R, T]
        boost = np.float32(np.log1p(c.query_boost))
        candidates = np.empty((requests, c.count), dtype=np.int64)
        for start in range(0, requests, _CHUNK):
            rows = slice(start, start + _CHUNK)
            logits = (np.float32(c.popularity_power) * self.log_popularity.astype(np.float32)
                      + np.float32(c.interest_power) * log_interest[rows][:, self.topic]
                      + boost * (self.topic[None, :] == self.topic[query[rows]][:, None]))
            logits[np.arange(len(logits)), query[rows]] = -np.inf
            candidates[rows] = _gumbel_top_k(logits, c.count, rng)
        shape = candidates.shape
        noise = {name: rng.random(shape) for name in NOISE_FIELDS[:5]}
        noise |= {name: rng.standard_normal(shape) for name in NOISE_FIELDS[5:]}
        base = (stream * 100_000 + day) * 10_000_000
        return Traffic(day, stream, base + np.arange(requests, dtype=np.int64), users,
                       self.user_device[users], query, candidates, noise)

    def _query_videos(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The video each user is watching: a topic from their interest, then a video of that
        topic with probability proportional to its popularity."""
        topic = _categorical(self.interest[users], rng)
        by_topic = np.argsort(self.topic, kind="stable")
        popularity = np.exp(self.log_popularity[by_topic])
        sorted_topic = self.topic[by_topic]
        totals = np.bincount(sorted_topic, weights=popularity, minlength=self.config.topics)
        within = (np.cumsum(popularity) - np.r_[0.0, np.cumsum(totals)][sorted_topic]) / totals[sorted_topic]
        cumulative = sorted_topic + within  # increasing; topic t's videos cover (t, t + 1]
        index = np.searchsorted(cumulative, topic + rng.random(len(users)), side="right")
        return by_topic[np.minimum(index, len(by_topic) - 1)]

    def interest_score(self, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
        """log(T * theta_u[topic_v]): 0 for a user indifferent to the topic."""
        return np.log(self.config.topics * self.interest[users, self.topic[videos]])

    def truth(self, traffic: Traffic) -> Truth:
        b = self.config.behaviour
        users, videos = traffic.user[:, None], traffic.candidates
        match = self.topic[videos] == self.topic[traffic.query][:, None]
        utility = (b.utility_interest * self.interest_score(users, videos)
                   + b.utility_quality * self.quality[videos] + b.utility_match * match)
        clickbait = self.clickbait[videos]
        satisfaction = utility - b.clickbait_penalty * clickbait
        mean_completion = _expected_sigmoid(b.completion_intercept + b.completion_utility * utility,
                                            b.completion_noise)
        return Truth(
            utility=utility, satisfaction=satisfaction,
            p_click=sigmoid(b.click_intercept + b.click_utility * utility
                            + b.click_clickbait * clickbait),
            expected_watch=self.duration[videos] * mean_completion,
            p_like=sigmoid(b.like_intercept + b.like_satisfaction * satisfaction),
            p_dismiss=sigmoid(b.dismiss_intercept - b.dismiss_satisfaction * satisfaction),
        )

    def respond(self, traffic: Traffic, position: np.ndarray, truth: Truth | None = None) -> Outcomes:
        """The users' responses to a slate assignment ``position`` ``[R, C]`` (0 = not shown)."""
        truth = truth or self.truth(traffic)
        b, n = self.config.behaviour, traffic.noise
        examined = n["exam"] < self.exam[traffic.device[:, None], position]
        click = examined & (n["click"] < truth.p_click)
        completion = sigmoid(b.completion_intercept + b.completion_utility * truth.utility
                             + b.completion_noise * n["watch"])
        watch = np.where(click, self.duration[traffic.candidates] * completion, 0.0)
        surveyed = click & (n["survey"] < b.survey_rate)
        answer = np.clip(np.round(3 + b.rating_satisfaction * truth.satisfaction
                                  + b.rating_noise * n["rating"]), 1, 5)
        return Outcomes(position=position, examined=examined, click=click, watch=watch,
                        like=click & (n["like"] < truth.p_like),
                        dismiss=click & (n["dismiss"] < truth.p_dismiss),
                        rating=np.where(surveyed, answer, np.nan))

    def expected_exam(self, traffic: Traffic, position: np.ndarray) -> np.ndarray:
        """True examination probability of each candidate under ``position`` ``[R, C]``."""
        return self.exam[traffic.device[:, None], position]


def slate_positions(scores: np.ndarray, slots: int) -> np.ndarray:
    """Positions 1..slots for the top-scored candidates of each request, 0 for the rest.

    Ties keep the candidate order (stable sort), so a constant score is a deterministic slate.
    """
    order = np.argsort(-scores, axis=1, kind="stable")[:, :slots]
    position = np.zeros(scores.shape, dtype=np.int64)
    np.put_along_axis(position, order, np.arange(1, order.shape[1] + 1)[None, :], axis=1)
    return position


def _categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of a row-stochastic matrix ``probs``."""
    cumulative = np.cumsum(probs, axis=1)
    draws = rng.random(len(probs))[:, None] * cumulative[:, -1:]
    return np.minimum((cumulative < draws).sum(axis=1), probs.shape[1] - 1)


def _gumbel_top_k(logits: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct indices per row, drawn without replacement with probability ~ exp(logits)."""
    uniform = rng.random(logits.shape, dtype=np.float32)
    keys = logits - np.log(-np.log(np.maximum(uniform, np.float32(1e-30))))
    top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _expected_sigmoid(mean: np.ndarray, scale: float) -> np.ndarray:
    """E[sigmoid(mean + scale * e)], e ~ N(0, 1), by Gauss-Hermite quadrature."""
    if scale == 0:
        return sigmoid(mean)
    nodes, weights = np.polynomial.hermite_e.hermegauss(_HERMITE_NODES)
    weights = weights / weights.sum()
    return np.tensordot(sigmoid(mean[..., None] + scale * nodes), weights, axes=([-1], [0]))

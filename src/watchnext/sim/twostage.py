"""The served two-stage system in the simulator, judged against the true utility.

The simulator's experiments rank ``World.traffic``'s own candidates (a draw from the world, not
what watchnext would retrieve). Here the first stage is watchnext's: the candidate sources are
fitted on the simulated impression logs, every evaluation request ``(user, query video)`` gets
the pool ``CandidatePool.merge`` builds, and the ranker orders it. Because the world knows every
video's true utility for the request, both stages are judged against the truth over the whole
catalogue (the query video excluded):

    recall of the top items   share of the request's true top-k utility videos in a list (the
                              pool: what retrieval can hand the ranker; the served top k: what
                              the person sees)
    NDCG@k                    of the served top k, gains exp(utility) (utility is a log-odds
                              scale, so exp keeps the order and makes every gain positive), the
                              ideal being the catalogue's best k

against the same ranker on a popular-only pool of the same size (the videos with most logged
clicks, under the pool's rule for the user's watched videos), the logging policy on the world's
candidates (what produced the logs), and the ranker on the world's candidates. Differences are
paired by request; intervals are 95%, clustered by user.

``source_ablation`` judges the sources live: pools that drop one source (or add one to popular
alone) are served to the same requests, the users respond (with noise fixed per request and
video, so arms differ only through what they show), and the live metrics' lifts over the full
pool come with the experiments' paired delta-method intervals (``watchnext.sim.measure``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from watchnext.retrieve.base import Query
from watchnext.retrieve.log import LogColumns
from watchnext.retrieve.pool import CandidatePool, default_pool
from watchnext.sim import measure
from watchnext.sim.world import NOISE_FIELDS, Outcomes, Traffic, World, slate_positions
from watchnext.stats import clustered_mean

COLUMNS = LogColumns(user="user_id", item="video_id", time="time_s", watched="click")
Scores = Callable[[Traffic], np.ndarray]
"""Scores ``[R, C]`` for a traffic's candidates (higher is shown higher)."""


def with_request_time(table: pa.Table, world: World) -> pa.Table:
    """The impressions with ``time_s``: the day's midnight (UTC) plus the request's share of the
    day, so a user's requests keep their order (the request id counts up within a day)."""
    day = np.array([dt.datetime.fromisoformat(d).replace(tzinfo=dt.UTC).timestamp()
                    for d in table["day"].to_pylist()])
    within = table["request_id"].to_numpy() % 10_000_000
    share = within / (within.max() + 1.0) if len(within) else within
    return table.append_column("time_s", pa.array(day + share * 86400.0))


def fit_pool(logs: pa.Table, world: World, size: int, shares: dict[str, float] | None = None,
             popular: dict[str, float] | None = None, exclude_watched: bool = True
             ) -> CandidatePool:
    """watchnext's default pool fitted on simulated impression logs (``video_topic`` feeds the
    topic source); ``popular`` overrides the popular source's settings; ``exclude_watched``:
    a user's pools leave out the videos the user clicked in ``logs``."""
    return default_pool(with_request_time(logs, world), COLUMNS, size, "video_topic", shares,
                        exclude_watched, popular)


def pooled_traffic(traffic: Traffic, candidates: np.ndarray) -> Traffic:
    """``traffic``'s requests with other candidates ``[R, C]`` (no response noise: only the
    truth and the ranker read it)."""
    return Traffic(traffic.day, traffic.stream, traffic.request_id, traffic.user, traffic.device,
                   traffic.query, candidates, {})


def pool_candidates(pool: CandidatePool, traffic: Traffic, fallback: np.ndarray
                    ) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """The pool of every request ``[R, size]``, and each source's own list per request (video
    ids); a short pool (few sources answer) is topped up from ``fallback`` (video ids, best
    first), as the popular source would."""
    size = pool.max_candidates
    out = np.empty((len(traffic.user), size), np.int64)
    own: dict[str, list[np.ndarray]] = {name: [] for name in pool.sources}
    for r, (user, query) in enumerate(zip(traffic.user.tolist(), traffic.query.tolist(),
                                          strict=True)):
        q = Query(str(user), str(query))
        found = pool.retrieve_each(q)
        for name, (codes, _) in found.items():
            ids = pool.sources[name].item_ids
            own[name].append(np.array([int(ids[c]) for c in codes.tolist()], np.int64))
        ids = [int(v) for v in pool.merge(q, found=found).ids]
        if len(ids) < size:
            have = set(ids) | {query}
            ids += [v for v in fallback.tolist() if v not in have][:size - len(ids)]
        out[r] = ids
    return out, own


def source_recall(utility: np.ndarray, own: list[np.ndarray], k: int) -> np.ndarray:
    """Per request: the share of the true top-k found in one source's own list."""
    best = np.argsort(-utility, axis=1, kind="stable")[:, :k]
    return np.array([np.isin(b, found).sum() / k for b, found in zip(best, own, strict=True)])


def popular_candidates(logs: pa.Table, traffic: Traffic, size: int,
                       watched: dict[str, frozenset[str]] | None = None) -> np.ndarray:
    """Per request, the ``size`` videos with most logged clicks, the query video left out, and
    the user's ``watched`` videos too when given (``CandidatePool.watched``: a popular-only
    baseline under the same exclusion rule as the pool it is compared with)."""
    clicked = logs.filter(pa.compute.equal(logs["click"], 1))["video_id"].to_numpy()
    videos, counts = np.unique(clicked, return_counts=True)
    ranked = videos[np.lexsort((videos, -counts))].tolist()
    watched = watched or {}
    rows = []
    for user, query in zip(traffic.user.tolist(), traffic.query.tolist(), strict=True):
        banned = {query, *(int(v) for v in watched.get(str(user), ()))}
        rows.append([v for v in ranked if v not in banned][:size])
    return np.array(rows, np.int64)


def catalogue_utility(world: World, traffic: Traffic) -> np.ndarray:
    """True utility of every video for every request ``[R, V]``; the query video is -inf."""
    videos = np.broadcast_to(np.arange(world.config.videos.count), (len(traffic.user),
                                                                    world.config.videos.count))
    utility = world.truth(pooled_traffic(traffic, np.ascontiguousarray(videos))).utility
    utility[np.arange(len(utility)), traffic.query] = -np.inf
    return utility


def judge(utility: np.ndarray, candidates: np.ndarray, scores: np.ndarray, k: int
          ) -> dict[str, np.ndarray]:
    """Per request: recall of the true top-k in the candidates and in the top k by ``scores``,
    and NDCG@k of that top k with gains exp(utility) against the catalogue's best k."""
    rows = np.arange(len(utility))[:, None]
    best = np.argsort(-utility, axis=1, kind="stable")[:, :k]
    is_best = np.zeros(utility.shape, bool)
    is_best[rows, best] = True
    shown = np.take_along_axis(candidates, np.argsort(-scores, axis=1, kind="stable")[:, :k], 1)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.exp(utility)
    dcg = (gains[rows, shown] * discount).sum(1)
    ideal = (gains[rows, best] * discount).sum(1)
    return {"pool_recall": is_best[rows, candidates].sum(1) / k,
            "top_recall": is_best[rows, shown].sum(1) / k,
            "ndcg": dcg / ideal}


def clustered(values: np.ndarray, users: np.ndarray) -> dict[str, float]:
    """Mean with a 95% interval clustered by user (a user's requests are not independent)."""
    mean, half, _ = clustered_mean(values, users)
    return {"value": mean, "low": mean - half, "high": mean + half}


def two_stage_report(world: World, logs: pa.Table, pool: CandidatePool, traffic: Traffic,
                     rank: Scores, logging: Scores, k: int = 10) -> dict[str, Any]:
    """Every system's recall and NDCG@k on ``traffic``, and the two-stage system's paired
    differences from the others."""
    utility = catalogue_utility(world, traffic)
    size = pool.max_candidates
    popular = popular_candidates(logs, traffic, size, pool.watched)
    pooled, own = pool_candidates(pool, traffic, popular_candidates(logs, traffic, size)[0])
    lists = {"two-stage (watchnext pool + ranker)": pooled,
             "popular-only pool + ranker": popular,
             "world candidates + ranker": traffic.candidates,
             "world candidates + logging policy": traffic.candidates}
    per: dict[str, dict[str, np.ndarray]] = {}
    for name, candidates in lists.items():
        served = pooled_traffic(traffic, candidates)
        scores = logging(served) if "logging" in name else rank(served)
        per[name] = judge(utility, candidates, scores, k)
    users = traffic.user
    systems = {name: {**{m: clustered(v, users) for m, v in values.items()},
                      "candidates": int(lists[name].shape[1])} for name, values in per.items()}
    sources = {name: {"pool_recall": clustered(source_recall(utility, found, k), users),
                      "mean_size": float(np.mean([len(f) for f in found]))}
               for name, found in own.items()}
    rng = np.random.default_rng([world.config.seed, 11])
    randoms = np.array([rng.choice(np.flatnonzero(np.isfinite(row)), size, replace=False)
                        for row in utility])
    sources["random (baseline)"] = {
        "pool_recall": clustered(judge(utility, randoms, np.zeros(randoms.shape), k)["pool_recall"],
                                 users), "mean_size": float(size)}
    first = next(iter(per))
    differences = {other: {m: clustered(per[first][m] - per[other][m], users)
                           for m in per[first]} for other in per if other != first}
    return {"k": k, "requests": len(users), "users": len(np.unique(users)), "pool_size": size,
            "quotas": pool.quotas, "skipped": pool.skipped, "systems": systems,
            "sources": sources,
            "two_stage_minus": differences}


def catalogue_noise(world: World, traffic: Traffic, salt: int = 13) -> dict[str, np.ndarray]:
    """Response noise per (request, video) ``[R, V]``: arms whose pools differ still draw the
    same click, watch and survey answer for the same video (common random numbers by video,
    where ``World.traffic`` fixes them by candidate slot)."""
    rng = np.random.default_rng([world.config.seed, *traffic.key(salt)])
    shape = (len(traffic.user), world.config.videos.count)
    noise = {name: rng.random(shape, dtype=np.float32) for name in NOISE_FIELDS[:5]}
    return noise | {name: rng.standard_normal(shape, dtype=np.float32)
                    for name in NOISE_FIELDS[5:]}


def served_outcomes(world: World, traffic: Traffic, candidates: np.ndarray, scores: np.ndarray,
                    noise: dict[str, np.ndarray]) -> Outcomes:
    """The users' responses to the top slots of ``candidates`` ordered by ``scores``."""
    rows = np.arange(len(candidates))[:, None]
    served = Traffic(traffic.day, traffic.stream, traffic.request_id, traffic.user,
                     traffic.device, traffic.query, candidates,
                     {name: values[rows, candidates] for name, values in noise.items()})
    return world.respond(served, slate_positions(scores, world.config.slots))


def source_ablation(world: World, pool: CandidatePool, traffic: Traffic, rank: Scores,
                    fallback: np.ndarray) -> dict[str, Any]:
    """Live lifts of pools that drop one source, or add one to popular alone, over the full
    pool, each ranked by the same ranker on the same requests with the same response noise."""
    names = list(pool.sources)
    arms = {"all sources": names}
    arms |= {f"without {n}": [m for m in names if m != n] for n in names if len(names) > 1}
    if "popular" in names:
        arms |= {f"popular + {n}": ["popular", n] for n in names if n != "popular"}
        arms["popular only"] = ["popular"]
    noise = catalogue_noise(world, traffic)
    sums = {}
    for arm, kept in arms.items():
        sub = CandidatePool({n: pool.sources[n] for n in kept}, pool.max_candidates,
                            {n: pool.quotas[n] for n in kept}, watched=pool.watched)
        candidates, _ = pool_candidates(sub, traffic, fallback)
        scores = rank(pooled_traffic(traffic, candidates))
        sums[arm] = measure.per_request(served_outcomes(world, traffic, candidates, scores, noise))
    control = sums["all sources"]
    return {"metrics": {arm: measure.summary(s) for arm, s in sums.items()},
            "lifts": {arm: {m: lift.to_dict() for m, lift in measure.lifts(s, control).items()}
                      for arm, s in sums.items() if arm != "all sources"}}

"""Sources judged live: A/B arms whose candidates come from watchnext's pool (issue 15, item 3).

An arms experiment with a ``[retrieval]`` section replaces the world's own candidates (a draw
from the world, ``World.traffic``) with what watchnext's first stage retrieves:

    pool        the default pool (``retrieve.pool.default_pool``: co-watch, embedding, two-tower,
                topic on the logged ``video_topic``, popular/fresh) with the section's quota
                shares of ``pool_size``, fitted once on every logged day (train and validation),
                before any arm trains; its sources are seeded, so the seed decides it
    an arm      ranks the pool of each evaluation request (user, query video) cut to its
                sources: all of them (the default), ``sources = [...]``, every source but
                ``drop_source``, or ``world_candidates`` (the world's candidates, no pool)
    responses   common random numbers per (request, video): the click, watch, like, dismiss and
                survey draws of a video are the same in every arm that shows it, whatever else
                the arm shows (``catalogue_noise``), so arms differ only by what they show

The candidates of every source set are computed once in the parent process and written to
``out/retrieval/`` (``candidates.npz``, ``pool.json``), which the training workers read. A pool
that the kept sources leave short (a cold query) is topped up with the most clicked videos of
the logs, as the popular source would. Arms that differ only by their candidates train the same
ranker (same config, same seed), so ``ab.run_arms`` trains it once per replicate and serves it to
each of them; a replicate retrains it with its own seed, as every arm.

Every arm of such an experiment is also judged against the true utility over the whole catalogue
(``judge``): the share of the request's true top-k videos in its candidates and in its served
top k, and NDCG@k of the served top k with gains exp(utility) against the catalogue's best k.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.artifacts.atomic import atomic_path
from watchnext.artifacts.checkpoint import write_json
from watchnext.config import ConfigError
from watchnext.evaluate.tables import markdown_table
from watchnext.retrieve.base import Query
from watchnext.retrieve.pool import CandidatePool
from watchnext.sim import logs, report
from watchnext.sim.experiment_config import Experiment, ExperimentConfig, arm_sources
from watchnext.sim.twostage import fit_pool
from watchnext.sim.world import NOISE_FIELDS, Outcomes, Traffic, Truth, World

FOLDER, CANDIDATES, MANIFEST = "retrieval", "candidates.npz", "pool.json"
_NOISE_SALT = 13
_CHUNK = 256  # requests per block of catalogue draws ([chunk, videos] per noise field)


def source_sets(cfg: ExperimentConfig) -> dict[str, tuple[str, ...]]:
    """Each pool arm's sources (arms ranking the world's candidates are left out)."""
    sets = {arm.name: arm_sources(cfg, arm) for arm in cfg.arms}
    return {name: kept for name, kept in sets.items() if kept is not None}


def write_candidates(experiment: Experiment, world: World, out: Path, dates: list[str],
                     traffic: Traffic) -> dict[str, Any]:
    """Fit the pool on every logged day and write each source set's candidates for the
    evaluation ``traffic`` to ``out/retrieval/``; returns the manifest written there."""
    cfg = experiment.config
    rt = cfg.retrieval
    every = logs.read_days(out / "logs", dates)
    pool = fit_pool(every, world, rt.pool_size, rt.shares, rt.popular, rt.exclude_watched)
    sets = sorted(set(source_sets(cfg).values()))
    fallback = clicked_order(every, world.config.videos.count)
    candidates = pool_candidates(pool, traffic, sets, fallback)
    keys = {kept: f"set{i}" for i, kept in enumerate(sets)}
    with atomic_path(out / FOLDER / CANDIDATES) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{keys[kept]: values for kept, values in candidates.items()})
    manifest = {"pool": pool.describe(), "requests": int(len(traffic.user)),
                "arms": {name: {"sources": list(kept), "key": keys[kept]}
                         for name, kept in source_sets(cfg).items()}}
    write_json(out / FOLDER / MANIFEST, manifest)
    return manifest


def read_candidates(cfg: ExperimentConfig, out: Path, requests: int) -> dict[str, np.ndarray]:
    """Each pool arm's candidates ``[R, pool_size]`` as ``write_candidates`` wrote them (arms
    with the same sources share one array)."""
    folder = out / FOLDER
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        with np.load(folder / CANDIDATES, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        arms = {name: arrays[entry["key"]] for name, entry in manifest["arms"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{folder}: unreadable candidates ({exc}); rerun the experiment "
                          "into an empty folder") from exc
    expected = source_sets(cfg)
    if set(arms) != set(expected) or any(
            manifest["arms"][n]["sources"] != list(s) for n, s in expected.items()) or any(
            a.shape != (requests, cfg.retrieval.pool_size) for a in arms.values()):
        raise ConfigError(f"{folder}: written for other arms, sources or requests than this "
                          "experiment's; rerun it into an empty folder")
    return arms


def clicked_order(table: pa.Table, videos: int) -> np.ndarray:
    """Every video of the catalogue, most clicked in ``table`` first (ties: lower id)."""
    clicked = table.filter(pc.equal(table["click"], 1))["video_id"].to_numpy()
    counts = np.bincount(clicked, minlength=videos)[:videos]
    return np.lexsort((np.arange(videos), -counts))


def pool_candidates(pool: CandidatePool, traffic: Traffic, sets: list[tuple[str, ...]],
                    fallback: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
    """Per source set, the merged pool of every request ``[R, pool size]`` (video ids).

    Every source answers each request once (``retrieve_each``); a set's pool merges only its
    sources' answers with their quotas, as a pool built from those sources alone would. A short
    pool is topped up from ``fallback`` (video ids, best first; the query and the pool left out).
    """
    size = pool.max_candidates
    subs = {kept: CandidatePool({n: pool.sources[n] for n in kept}, size,
                                {n: pool.quotas[n] for n in kept}, watched=pool.watched)
            for kept in sets}
    out = {kept: np.empty((len(traffic.user), size), np.int32) for kept in sets}
    for r, (user, query) in enumerate(zip(traffic.user.tolist(), traffic.query.tolist(),
                                          strict=True)):
        q = Query(str(user), str(query))
        found = pool.retrieve_each(q)
        for kept, sub in subs.items():
            ids = [int(v) for v in sub.merge(q, found={n: found[n] for n in kept}).ids]
            if len(ids) < size:
                have = {*ids, query}
                ids += [v for v in fallback.tolist() if v not in have][:size - len(ids)]
            out[kept][r] = ids
    return out


def catalogue_noise(world: World, traffic: Traffic, candidates: np.ndarray) -> dict[str, np.ndarray]:
    """Response noise ``[R, C]`` of ``candidates``, drawn per (request, video) over the whole
    catalogue: the same video in the same request gets the same draws in every arm.

    Blocks of ``_CHUNK`` requests draw ``[chunk, videos]`` per field from a generator seeded by
    the block, so the memory stays small and a draw depends only on (request, video).
    """
    videos = world.config.videos.count
    noise = {name: np.empty(candidates.shape, np.float32) for name in NOISE_FIELDS}
    for start in range(0, len(candidates), _CHUNK):
        rows = slice(start, start + _CHUNK)
        block = candidates[rows].astype(np.int64)
        rng = np.random.default_rng([world.config.seed, *traffic.key(_NOISE_SALT), start])
        for i, name in enumerate(NOISE_FIELDS):
            shape = (len(block), videos)
            draws = rng.random(shape, np.float32) if i < 5 else rng.standard_normal(
                shape, np.float32)
            noise[name][rows] = np.take_along_axis(draws, block, axis=1)
    return noise


def arm_traffic(world: World, traffic: Traffic, candidates: np.ndarray) -> tuple[Traffic, Truth]:
    """The evaluation requests with the arm's candidates, their noise and their truth."""
    served = dataclasses.replace(traffic, candidates=candidates.astype(np.int64),
                                 noise=catalogue_noise(world, traffic, candidates))
    return served, world.truth(served)


@dataclass
class CatalogueBest:
    """Per request, the true top-k videos of the whole catalogue (query excluded), best first,
    and their utilities."""

    ids: np.ndarray  # [R, k]
    utility: np.ndarray  # [R, k]


def catalogue_best(world: World, traffic: Traffic, k: int) -> CatalogueBest:
    """The catalogue's true best k per request, computed in blocks of requests."""
    videos = world.config.videos.count
    ids, utility = [], []
    for start in range(0, len(traffic.user), _CHUNK):
        rows = slice(start, start + _CHUNK)
        n = len(traffic.user[rows])
        block = dataclasses.replace(
            traffic, user=traffic.user[rows], device=traffic.device[rows],
            query=traffic.query[rows], request_id=traffic.request_id[rows],
            candidates=np.broadcast_to(np.arange(videos), (n, videos)), noise={})
        u = world.truth(block).utility
        u[np.arange(n), block.query] = -np.inf
        best = np.argsort(-u, axis=1, kind="stable")[:, :k]
        ids.append(best)
        utility.append(np.take_along_axis(u, best, axis=1))
    return CatalogueBest(np.concatenate(ids), np.concatenate(utility))


def judge(best: CatalogueBest, traffic: Traffic, truth: Truth, outcomes: Outcomes
          ) -> dict[str, np.ndarray]:
    """Per request: the share of the catalogue's true top k in the candidates and in the served
    top k (slots 1..k), and NDCG@k of the served top k (gains exp(utility)) against the
    catalogue's best k."""
    k = best.ids.shape[1]
    rank = np.where(outcomes.position > 0, outcomes.position, np.iinfo(np.int64).max)
    top = np.argsort(rank, axis=1, kind="stable")[:, :k]
    shown = np.take_along_axis(outcomes.position, top, axis=1) > 0
    items = np.take_along_axis(traffic.candidates, top, axis=1)
    gains = np.where(shown, np.exp(np.take_along_axis(truth.utility, top, axis=1)), 0.0)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = (np.exp(best.utility) * discount).sum(1)

    def found(lists: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        hit = (best.ids[:, :, None] == lists[:, None, :])
        if mask is not None:
            hit &= mask[:, None, :]
        return hit.any(2).sum(1) / k

    return {"pool_recall": found(traffic.candidates), "top_recall": found(items, shown),
            "ndcg": (gains * discount).sum(1) / ideal}


def markdown(results: dict[str, Any], k: int) -> str:
    """The arms' candidates and their served top k against the catalogue's true utility."""
    arms = results["retrieval"]["arms"]
    header = ["arm", "candidates", f"true top {k} in candidates", f"true top {k} in served top {k}",
              f"NDCG@{k} (true utility)", f"NDCG@{k} lift"]
    rows = []
    for name, arm in results["arms"].items():
        judged = arm["catalogue"]
        kept = "+".join(arms[name]["sources"]) if name in arms else "world's candidates"
        rows.append([name, kept, f"{100 * judged['pool_recall']:.2f}%",
                     f"{100 * judged['top_recall']:.2f}%", f"{100 * judged['ndcg']:.2f}%",
                     "control" if name == results["control"] else report.pct(
                         arm["catalogue_ndcg_lift"])])
    return "\n".join([
        "## Against the catalogue's true utility", "", markdown_table(header, rows), "",
        f"Candidates: the pool's sources an arm ranks (`[retrieval]`, pool of "
        f"{results['retrieval']['pool']['max_candidates']}), or the world's own. Per request, the "
        f"share of its true top {k} videos of the whole catalogue (query excluded) in the arm's "
        f"candidates and in its served top {k}, and NDCG@{k} of the served top {k} (gains "
        f"exp(utility)) against the catalogue's best {k}; means over replicates. The NDCG lift "
        "over control has the live metrics' replicated interval."])

"""Impression logs in the trainer's schema, and Parquet partitioned by simulated day.

One row per shown slot. The columns are what a platform observes; the hidden truth (interest,
quality, clickbait, examination) never reaches the logs:

    day, request_id, user_id, device, query_video_id, query_topic, video_id, video_topic,
    topic_match, duration_min, topic_history, popularity, position, policy,
    click, watch_minutes, like, dismiss, rating

``policy`` names the policy that ordered the row's slate: ``random`` on the randomised requests of
a logging policy that explores, so position and item are independent on those rows.

``topic_history`` is the user's share of past watches in the candidate's topic (a history
feature); ``popularity`` is the video's log view count. Satisfaction labels and the watch time
are conditional on a click: ``watch_minutes``, ``like`` and ``dismiss`` are null without a click,
``rating`` is null unless a survey was answered. So the satisfaction tasks model the response to a
watched video and carry no selection bias of the slot; the engagement task ``click`` carries it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from watchnext.data.io import read_tables, write_parquet_atomic
from watchnext.sim.world import Outcomes, Traffic, World


def _features(world: World, traffic: Traffic, rows: np.ndarray, cols: np.ndarray) -> dict[str, pa.Array]:
    videos = traffic.candidates[rows, cols]
    users, queries = traffic.user[rows], traffic.query[rows]
    devices = np.array(world.config.device_names)[traffic.device[rows]]
    return {
        "day": pa.array(np.full(len(rows), world.config.date(traffic.day))),
        "request_id": pa.array(traffic.request_id[rows]),
        "user_id": pa.array(users.astype(np.int64)),
        "device": pa.array(devices),
        "query_video_id": pa.array(queries.astype(np.int64)),
        "query_topic": pa.array(world.topic[queries].astype(np.int64)),
        "video_id": pa.array(videos.astype(np.int64)),
        "video_topic": pa.array(world.topic[videos].astype(np.int64)),
        "topic_match": pa.array((world.topic[videos] == world.topic[queries]).astype(np.int8)),
        "duration_min": pa.array(world.duration[videos].astype(np.float32)),
        "topic_history": pa.array(world.history[users, world.topic[videos]].astype(np.float32)),
        "popularity": pa.array(world.log_popularity[videos].astype(np.float32)),
    }


def impressions(world: World, traffic: Traffic, outcomes: Outcomes, policy: str | np.ndarray
                ) -> pa.Table:
    """The shown slots as log rows, ordered by request then position.

    ``policy`` names what ordered the slates: one name, or one per request ``[R]`` (a mix that
    explores logs ``random`` on its randomised requests).
    """
    rows, cols = np.nonzero(outcomes.position)
    order = np.lexsort((outcomes.position[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    click = outcomes.click[rows, cols]
    table = _features(world, traffic, rows, cols)
    table["position"] = pa.array(outcomes.position[rows, cols].astype(np.int64))
    table["policy"] = pa.array(np.asarray(policy, dtype=str)[rows] if np.ndim(policy)
                               else np.full(len(rows), policy))
    table["click"] = pa.array(click.astype(np.int8))
    table["watch_minutes"] = pa.array(outcomes.watch[rows, cols].astype(np.float32), mask=~click)
    table["like"] = pa.array(outcomes.like[rows, cols].astype(np.int8), mask=~click)
    table["dismiss"] = pa.array(outcomes.dismiss[rows, cols].astype(np.int8), mask=~click)
    rating = outcomes.rating[rows, cols]
    table["rating"] = pa.array(rating.astype(np.float32), mask=np.isnan(rating))
    return pa.table(table)


def candidates(world: World, traffic: Traffic, position: int | None = None) -> pa.Table:
    """Every (request, candidate) pair as a table a ranker can score, row r * C + c.

    ``position`` is null (unknown before ranking) unless a fixed serving value is given, as the
    position-as-a-feature baseline needs; there are no label columns (nothing is observed yet).
    """
    n_requests, n_candidates = traffic.shape
    rows = np.repeat(np.arange(n_requests), n_candidates)
    cols = np.tile(np.arange(n_candidates), n_requests)
    table = _features(world, traffic, rows, cols)
    table["position"] = pa.array(np.full(len(rows), position or 0, dtype=np.int64),
                                 mask=np.full(len(rows), position is None))
    return pa.table(table)


def day_folder(root: str | Path, date: str) -> Path:
    return Path(root) / f"day={date}"


def write_day(table: pa.Table, root: str | Path, date: str) -> Path:
    """Write one simulated day's impressions to ``root/day=YYYY-MM-DD/impressions.parquet``."""
    path = day_folder(root, date) / "impressions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(table, path)
    return path


def read_days(root: str | Path, dates: list[str] | None = None) -> pa.Table:
    """The impressions of the given days (all days when None), in day order."""
    root = Path(root)
    folders = [day_folder(root, d) for d in dates] if dates is not None else sorted(root.glob("day=*"))
    return read_tables([str(f) for f in folders])

"""KuaiRand-27K sample (CC BY-SA 4.0) and its benchmark protocol, ``kuairand-sample v1``.

Split by date: train 2022-04-08..17, validation 2022-04-18, test 2022-04-19..21. Features are the
allowed ones (ids, the user table, hour, weekday, video length) plus point-in-time history
computed from earlier days only (``watchnext.data.history``): of the user (all past days, and the
last three), of the video, and of the user with videos of the same length class. No label column
is ever a feature; labels only enter through earlier days' averages.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from watchnext.data.datasets import bundled_path
from watchnext.data.history import add_history_features

PROTOCOL = "kuairand-sample-v1"
SPLITS = {"train": (20220408, 20220417), "valid": (20220418, 20220418),
          "test": (20220419, 20220421)}
# Outcomes whose past averages become features (plus watch_time and watch_ratio, derived).
HISTORY_LABELS = ("is_click", "long_view", "label", "is_comment", "is_follow", "is_forward")
COUNTED_LABELS = ("is_click", "long_view", "label")  # also get past positive / negative counts
RECENT_DAYS = 3  # the short window of the user's recent-history features
SMOOTHING = 20.0  # pseudo-rows of the global prior in each rate (5 and 50 scored the same)
ROW = "__row"  # the file's row number, a temporary tie-breaker
MAX_WATCH_RATIO = 5.0  # play / duration is capped: replays of a 3 s clip are not 100x interest


def load_interactions() -> pa.Table:
    """All 41,828 rows with user features joined and derived context and history columns added."""
    return build_features(read_rows())


def read_rows() -> pa.Table:
    """The bundled logs joined with the user table, in time order (no derived columns yet)."""
    folder = bundled_path("kuairand_sample")
    rows = pq.read_table(folder / "interactions.parquet")
    rows = rows.append_column(ROW, pa.array(np.arange(rows.num_rows)))
    users = pq.read_table(folder / "user_features.parquet")
    # A threaded join emits rows in a scheduling-dependent order and 4,761 rows share their
    # (date, time_ms) with another: the file's own order breaks those ties, so runs repeat.
    joined = rows.join(users, "user_id", join_type="left outer", use_threads=False)
    return joined.sort_by([("date", "ascending"), ("time_ms", "ascending"), (ROW, "ascending")]
                          ).drop_columns([ROW])


def build_features(rows: pa.Table) -> pa.Table:
    """Context columns, then history features from strictly earlier days (see ``history``)."""
    rows = add_context(rows)
    labels = history_labels(rows)
    rows = add_history_features(rows, ["user_id", "video_id", "user_length"], labels, "date",
                                smoothing=SMOOTHING, counted=COUNTED_LABELS)
    return add_history_features(rows, ["user_id"], labels, "date", smoothing=SMOOTHING,
                                window=RECENT_DAYS, prefix="recent")


def add_context(rows: pa.Table) -> pa.Table:
    """Hour of day, weekday, and the (user, video-length bucket) key for the length history."""
    rows = rows.append_column("hour", pc.divide(rows["hourmin"], 100))
    weekdays = [dt.date(d // 10000, d // 100 % 100, d % 100).weekday()
                for d in rows["date"].to_pylist()]
    rows = rows.append_column("weekday", pa.array(weekdays, pa.int64()))
    buckets = length_bucket(rows["duration_ms"].to_numpy())
    keys = [f"{u}:{b}" for u, b in zip(rows["user_id"].to_pylist(), buckets.tolist(), strict=True)]
    return rows.append_column("user_length", pa.array(keys, pa.string()))


def length_bucket(duration_ms: np.ndarray) -> np.ndarray:
    """Coarse video-length class (unknown, <15 s, <30 s, <60 s, <3 min, longer): a user's taste
    for long or short videos is what the (user, length) history captures."""
    seconds = np.asarray(duration_ms, dtype=np.float64) / 1000.0
    return np.where(seconds <= 0, 0, 1 + np.searchsorted([15.0, 30.0, 60.0, 180.0], seconds))


def history_labels(rows: pa.Table) -> dict[str, np.ndarray]:
    """The per-row outcomes whose past averages become features (only ever of earlier days)."""
    labels = {name: rows[name].to_numpy().astype(np.float64) for name in HISTORY_LABELS}
    play = rows["play_time_ms"].to_numpy().astype(np.float64)
    duration = rows["duration_ms"].to_numpy().astype(np.float64)
    labels["watch_time"] = np.log1p(play / 1000.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        labels["watch_ratio"] = np.where(duration > 0, np.minimum(play / duration, MAX_WATCH_RATIO),
                                         np.nan)
    return labels


def load_splits() -> dict[str, pa.Table]:
    """``train`` / ``valid`` / ``test`` by the protocol's dates."""
    rows = load_interactions()
    out = {}
    for split, (first, last) in SPLITS.items():
        mask = pc.and_(pc.greater_equal(rows["date"], first), pc.less_equal(rows["date"], last))
        out[split] = rows.filter(mask)
    return out


def train_days() -> list[tuple[str, pa.Table]]:
    """The training split as time-ordered daily chunks, for sequential training."""
    train = load_splits()["train"]
    days = sorted(set(train["date"].to_pylist()))
    return [(str(d), train.filter(pc.equal(train["date"], d))) for d in days]

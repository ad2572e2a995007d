"""KuaiRand-27K sample (CC BY-SA 4.0) and its benchmark protocol, ``kuairand-sample v1``.

Split by date: train 2022-04-08..17, validation 2022-04-18, test 2022-04-19..21. Features are the
allowed ones (ids, the user table, hour, weekday, video length) plus point-in-time history
computed from earlier days only (``watchnext.data.history``): of the user (all past days, and the
last three), of the video, and of the user with videos of the same length class. No label column
is ever a feature; labels only enter through earlier days' averages.

This module adds the context columns (hour, weekday, the (user, length class) key); which history
features exist is said once, by the ``[[history]]`` blocks of the run config (the protocol's own
are those of the bundled ``kuairand_v1.toml``).
"""

from __future__ import annotations

import datetime as dt
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from watchnext.config import RunConfig, load_config
from watchnext.data.datasets import bundled_path
from watchnext.data.history import add_history

PROTOCOL = "kuairand-sample-v1"
SPLITS = {"train": (20220408, 20220417), "valid": (20220418, 20220418),
          "test": (20220419, 20220421)}
ROW = "__row"  # the file's row number, a temporary tie-breaker


def protocol_config() -> RunConfig:
    """The bundled ``kuairand_v1.toml``: its ``[[history]]`` blocks are the protocol's history."""
    return load_config(str(resources.files("watchnext.configs") / "kuairand_v1.toml"))


def load_interactions(config: RunConfig | None = None) -> pa.Table:
    """All 41,828 rows with user features joined and derived context and history columns added."""
    return build_features(read_rows(), config)


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


def build_features(rows: pa.Table, config: RunConfig | None = None) -> pa.Table:
    """Context columns, then the history features of ``config`` (the protocol's when it has no
    ``[[history]]`` blocks), from strictly earlier days (see ``history``)."""
    return add_history(add_context(rows), config if config and config.history else protocol_config())


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


def load_splits(config: RunConfig | None = None) -> dict[str, pa.Table]:
    """``train`` / ``valid`` / ``test`` by the protocol's dates, with ``config``'s history
    features (default: the protocol's)."""
    rows = load_interactions(config)
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

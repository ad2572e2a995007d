"""Pair features, keyed by (user, kind of video): kinds learned from the logs, served per pair."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from watchnext.api import Ranker
from watchnext.config import config_from_dict
from watchnext.retrieve.log import LogColumns
from watchnext.serve.features import FeatureStore
from watchnext.serve.pairs import item_kinds

WHEN = dt.datetime(2024, 1, 3, tzinfo=dt.UTC)


def test_kinds_are_connected_components():
    # groups: {0, 1}, {1, 2}, {3, 4}; item 5 alone
    items = np.array([0, 1, 1, 2, 3, 4, 5])
    groups = np.array([0, 0, 1, 1, 2, 2, 3])
    kinds = item_kinds(items, groups, 6)
    assert kinds[0] == kinds[1] == kinds[2]
    assert kinds[3] == kinds[4] != kinds[0]
    assert len(set(kinds.tolist())) == 3


@pytest.fixture(scope="module")
def pair_logs() -> pa.Table:
    """Videos v0..v19 are 'short' (even) or 'long' (odd); each user has a rate per kind and day."""
    rng = np.random.default_rng(0)
    rows = []
    for day in (1, 2):
        for u in range(12):
            for v in rng.choice(20, 6, replace=False):
                kind = "short" if v % 2 == 0 else "long"
                rows.append({"user_id": f"u{u}", "video_id": f"v{v}", "date": 20240100 + day,
                             "time_ms": 1_704_000_000_000 + day * 86_400_000 + len(rows),
                             "user_kind": f"u{u}:{kind}",
                             "pair_rate": u * 10 + (1 if kind == "long" else 0) + day / 100,
                             "is_click": int(rng.random() < 0.5)})
    return pa.Table.from_pylist(rows)


@pytest.fixture(scope="module")
def store(pair_logs) -> FeatureStore:
    cfg = config_from_dict({
        "features": [{"name": "user_id", "kind": "categorical"},
                     {"name": "video_id", "kind": "categorical"},
                     {"name": "pair_rate", "kind": "numeric", "transform": "standardize"}],
        "tasks": [{"name": "click", "type": "binary", "label": "is_click", "group": "engagement"}],
        "data": {"user_column": "user_id", "day_column": "date"},
        "train": {"max_epochs": 1, "progress": False}})
    ranker = Ranker(cfg).fit(pair_logs)
    return FeatureStore.build(pair_logs, ranker.encoder, LogColumns(watched="is_click"))


def test_pair_role_and_latest_value_per_user_and_kind(store, pair_logs):
    assert store.roles["pair_rate"] == "pair:user_kind"
    assert store.fast
    long_videos = [f"v{v}" for v in range(1, 20, 2) if f"v{v}" in store.item_index]
    short_videos = [f"v{v}" for v in range(0, 20, 2) if f"v{v}" in store.item_index]
    raw = store.raw_table("u3", [long_videos[0], short_videos[0], "v99"], None, WHEN)
    values = raw["pair_rate"].to_pylist()
    assert values[0] == pytest.approx(31.02)  # u3, long, latest day
    assert values[1] == pytest.approx(30.02)  # u3, short, latest day
    assert values[2] == store.defaults["pair_rate"]  # unknown video: cold start


def test_fast_path_equals_raw_path_for_pairs(store):
    items = [*store.item_ids, "v99"]
    for user in ("u0", "u7", "stranger", None):
        fast = store.encode(user, items, None, WHEN)
        reference = store.encoder.transform(store.raw_table(user, items, None, WHEN),
                                            targets=False)
        assert np.array_equal(fast.categorical, reference.categorical.numpy())
        assert np.allclose(fast.dense, reference.dense.numpy(), rtol=0, atol=0)


def test_pairs_survive_save_and_load(tmp_path, store):
    store.save(tmp_path / "fs")
    loaded = FeatureStore.load(tmp_path / "fs", store.encoder)
    a = store.encode("u5", store.item_ids, None, WHEN)
    b = loaded.encode("u5", store.item_ids, None, WHEN)
    assert np.array_equal(a.dense, b.dense)

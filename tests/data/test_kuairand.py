"""kuairand-sample v1: the protocol's splits, tasks and allowed features, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from watchnext.config import load_config
from watchnext.data import expressions
from watchnext.data.datasets import kuairand
from watchnext.workflows import bundled_config

# The data README: "Never features: any label column, play_time_ms, comment_stay_time,
# is_profile_enter."
NEVER_FEATURES = {"is_click", "is_follow", "is_comment", "is_forward", "long_view", "label",
                  "play_time_ms", "comment_stay_time", "is_profile_enter"}


@pytest.fixture(scope="module")
def raw() -> pa.Table:
    return kuairand.read_rows()


@pytest.fixture(scope="module")
def splits() -> dict[str, pa.Table]:
    return kuairand.load_splits()


@pytest.fixture(scope="module")
def config():
    return load_config(bundled_config("kuairand_v1"))


def test_split_row_counts_and_dates(splits: dict[str, pa.Table]) -> None:
    assert {k: v.num_rows for k, v in splits.items()} == {
        "train": 33485, "valid": 2231, "test": 6112}
    for split, (first, last) in kuairand.SPLITS.items():
        dates = splits[split]["date"]
        assert pc.min(dates).as_py() == first and pc.max(dates).as_py() == last


def test_no_feature_reads_a_label_column(config) -> None:
    for feature in config.features:
        sources = expressions.columns(feature.expression) if feature.expression else {feature.source}
        assert not sources & NEVER_FEATURES, f"feature {feature.name!r} reads {sources & NEVER_FEATURES}"


def test_every_feature_column_exists(config, splits: dict[str, pa.Table]) -> None:
    columns = set(splits["train"].column_names)
    for feature in config.features:
        needed = expressions.columns(feature.expression) if feature.expression else {feature.source}
        assert needed <= columns, feature.name


def test_config_keeps_the_protocol_tasks(config) -> None:
    assert config.data.dataset == kuairand.PROTOCOL
    groups = [t.group for t in config.tasks]
    assert groups.count("engagement") == 3 and groups.count("satisfaction") == 4
    labels = {t.name: t.label for t in config.tasks}
    assert labels == {"click": "is_click", "long_view": "long_view",
                      "watch_time": "log1p(play_time_ms / 1000)", "like": "label",
                      "comment": "is_comment", "follow": "is_follow", "forward": "is_forward"}


def _with_labels_changed_from(raw: pa.Table, first_day: int, seed: int = 0) -> pa.Table:
    """The same log with every label (and play time) of ``first_day`` and later redrawn."""
    rng = np.random.default_rng(seed)
    later = raw["date"].to_numpy() >= first_day
    for name in (*kuairand.HISTORY_LABELS, "play_time_ms"):
        values = raw[name].to_numpy().copy()
        drawn = rng.integers(0, 100_000, later.sum()) if name == "play_time_ms" else \
            rng.integers(0, 2, later.sum())
        values[later] = drawn
        raw = raw.set_column(raw.schema.get_field_index(name), name, pa.array(values))
    return raw


def test_history_features_ignore_labels_of_the_same_and_later_days(raw: pa.Table, config) -> None:
    valid_day = kuairand.SPLITS["valid"][0]
    before = kuairand.build_features(raw)
    after = kuairand.build_features(_with_labels_changed_from(raw, valid_day))
    days = before["date"].to_numpy()
    used = [f.source for f in config.features if not f.expression and f.source in before.column_names]
    history = [c for c in used if "_hist_" in c or "_recent_" in c]
    assert history, "the config should use history features"
    for name in history:
        a, b = before[name].to_numpy(), after[name].to_numpy()
        np.testing.assert_array_equal(a[days <= valid_day], b[days <= valid_day], err_msg=name)
    # the check can fail: the test days do see the changed validation-day labels
    changed = [n for n in history
               if not np.array_equal(before[n].to_numpy()[days > valid_day],
                                     after[n].to_numpy()[days > valid_day])]
    assert changed


def test_rows_come_in_time_order_with_ties_in_file_order():
    """The threaded join used to emit tied rows in a scheduling-dependent order: runs differed
    (2 of 5 reads in a row, measured), so each of several reads must match the reference."""
    raw = pq.read_table(kuairand.bundled_path("kuairand_sample") / "interactions.parquet")
    date, time_ms = raw["date"].to_numpy(), raw["time_ms"].to_numpy()
    order = np.lexsort((np.arange(raw.num_rows), time_ms, date))
    for _ in range(4):
        rows = kuairand.read_rows()
        assert "__row" not in rows.column_names
        for column in ("user_id", "video_id", "time_ms"):
            np.testing.assert_array_equal(rows[column].to_numpy(), raw[column].to_numpy()[order])

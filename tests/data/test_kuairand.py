"""kuairand-sample v1: the protocol's splits, tasks and allowed features, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from watchnext.config import FeatureSpec, load_config
from watchnext.data import expressions
from watchnext.data.datasets import kuairand
from watchnext.data.history import add_history_features
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


def _history_label_columns(config) -> set[str]:
    """The label columns the history features average (directly or through an expression)."""
    defined = dict(config.history_labels)
    read = {c for h in config.history for name in h.labels
            for c in expressions.columns(defined.get(name, name))}
    return read & NEVER_FEATURES


def _with_labels_changed_from(raw: pa.Table, config, first_day: int, seed: int = 0) -> pa.Table:
    """The same log with every label (and play time) of ``first_day`` and later redrawn."""
    rng = np.random.default_rng(seed)
    later = raw["date"].to_numpy() >= first_day
    columns = _history_label_columns(config)
    assert {"is_click", "label", "play_time_ms"} <= columns
    for name in sorted(columns):
        values = raw[name].to_numpy().copy()
        drawn = rng.integers(0, 100_000, later.sum()) if name == "play_time_ms" else \
            rng.integers(0, 2, later.sum())
        values[later] = drawn
        raw = raw.set_column(raw.schema.get_field_index(name), name, pa.array(values))
    return raw


def test_history_features_ignore_labels_of_the_same_and_later_days(raw: pa.Table, config) -> None:
    valid_day = kuairand.SPLITS["valid"][0]
    before = kuairand.build_features(raw)
    after = kuairand.build_features(_with_labels_changed_from(raw, config, valid_day))
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


# The 44 history features as kuairand_v1.toml spelled them out one by one before [[history]]
# blocks (commit 8804a17); each was {name, kind = "numeric", column = name, transform = "standardize"},
# now "standardize_asinh".
EXPLICIT_HISTORY = [
    "user_id_hist_n", "user_id_hist_is_click", "user_id_hist_long_view", "user_id_hist_label",
    "user_id_hist_is_comment", "user_id_hist_watch_time", "user_id_hist_watch_ratio",
    "user_id_hist_first", "user_id_hist_last", "user_id_recent_n", "user_id_recent_is_click",
    "user_id_recent_long_view", "user_id_recent_label", "user_id_recent_is_comment",
    "user_id_recent_is_follow", "user_id_recent_is_forward", "user_id_recent_watch_time",
    "user_id_recent_watch_ratio", "user_length_hist_n", "user_length_hist_is_click",
    "user_length_hist_long_view", "user_length_hist_label", "user_length_hist_is_comment",
    "user_length_hist_is_follow", "user_length_hist_is_forward", "user_length_hist_watch_time",
    "user_length_hist_watch_ratio", "user_length_hist_first", "user_length_hist_last",
    "video_id_hist_n", "video_id_hist_is_click", "video_id_hist_long_view", "video_id_hist_label",
    "video_id_hist_is_comment", "video_id_hist_watch_time", "video_id_hist_watch_ratio",
    "video_id_hist_first", "video_id_hist_last", "video_id_hist_is_click_pos",
    "video_id_hist_is_click_neg", "video_id_hist_long_view_pos", "video_id_hist_long_view_neg",
    "video_id_hist_label_pos", "video_id_hist_label_neg",
]


def test_history_blocks_expand_to_the_explicit_feature_list(config) -> None:
    assert len(config.history) == 4
    expanded = [FeatureSpec(name=n, kind="numeric", column=n, transform="standardize_asinh")
                for n in EXPLICIT_HISTORY]
    assert list(config.features[9:]) == expanded
    assert [f.name for f in config.features[:9]] == [
        "hour", "weekday", "user_active_degree", "follow_user_num_range", "fans_user_num_range",
        "friend_user_num_range", "register_days_range", "video_length", "video_length_known"]


def test_history_values_equal_the_hand_written_computation(raw: pa.Table, config) -> None:
    """The config-driven columns equal what datasets/kuairand.py computed by hand before."""
    rows = kuairand.add_context(raw)
    labels = {n: rows[n].to_numpy().astype(np.float64) for n in
              ("is_click", "long_view", "label", "is_comment", "is_follow", "is_forward")}
    play, duration = (rows[c].to_numpy().astype(np.float64) for c in ("play_time_ms", "duration_ms"))
    labels["watch_time"] = np.log1p(play / 1000.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        labels["watch_ratio"] = np.where(duration > 0, np.minimum(play / duration, 5.0), np.nan)
    by_hand = add_history_features(rows, ["user_id", "video_id", "user_length"], labels, "date",
                                   smoothing=20.0, counted=("is_click", "long_view", "label"))
    by_hand = add_history_features(by_hand, ["user_id"], labels, "date", smoothing=20.0,
                                   window=3, prefix="recent")
    built = kuairand.build_features(raw, config)
    for name in EXPLICIT_HISTORY:
        np.testing.assert_array_equal(built[name].to_numpy(), by_hand[name].to_numpy(),
                                      err_msg=name)

"""Point-in-time history features: exact values on a hand-made log, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from watchnext.config import config_from_dict
from watchnext.data.errors import DataError
from watchnext.data.history import (
    add_history,
    add_history_features,
    day_rank,
    days_seen,
    history_as_of_end,
)

# user a: days 1, 1, 2, 4; user b: days 2, 3, 3
USERS = ["a", "a", "b", "a", "b", "b", "a"]
DAYS = [1, 1, 2, 2, 3, 3, 4]
CLICKS = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]


def _log(clicks: list[float] = CLICKS) -> tuple[pa.Table, dict[str, np.ndarray]]:
    table = pa.table({"user": USERS, "day": DAYS})
    return table, {"click": np.array(clicks)}


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table[name].to_numpy()


def test_rates_use_earlier_days_only_with_a_smoothed_prior() -> None:
    table, labels = _log()
    out = add_history_features(table, ["user"], labels, "day", smoothing=2.0)
    rate = _column(out, "user_hist_click")
    # day 1: nothing earlier, prior 0 -> rate 0 for both rows of day 1
    assert rate[0] == rate[1] == 0.0
    # user a on day 2: one earlier day with clicks (1, 0); prior = mean of day 1 = 0.5
    assert rate[3] == pytest.approx((1.0 + 2.0 * 0.5) / (2 + 2.0))
    # user b on day 2: no history of its own -> exactly the prior
    assert rate[2] == pytest.approx(0.5)
    # user a on day 4: days 1-2 (1, 0, 1); prior = mean of days 1..3 = 4 / 6
    assert rate[6] == pytest.approx((2.0 + 2.0 * 4 / 6) / (3 + 2.0))
    assert np.expm1(_column(out, "user_hist_n")).round().tolist() == [0, 0, 0, 2, 1, 1, 3]


def test_labels_of_the_rows_own_day_and_later_never_change_its_features() -> None:
    table, labels = _log()
    before = add_history_features(table, ["user"], labels, "day", counted=("click",))
    changed = np.where(np.array(DAYS) >= 3, 1.0, CLICKS)  # every label from day 3 on set to 1
    after = add_history_features(table, ["user"], {"click": changed}, "day", counted=("click",))
    features = [c for c in before.column_names if c.startswith("user_hist")]
    up_to_day_3 = np.array(DAYS) <= 3  # day 3's own labels changed: its rows must not notice
    for name in features:
        np.testing.assert_array_equal(_column(before, name)[up_to_day_3],
                                      _column(after, name)[up_to_day_3])
    # the check can fail: a row on day 4 does see day 3's changed labels (through the prior)
    assert _column(before, "user_hist_click")[6] != _column(after, "user_hist_click")[6]


def test_missing_labels_count_in_neither_sum_nor_count() -> None:
    table, _ = _log()
    values = np.array([1.0, np.nan, 1.0, 1.0, 0.0, 1.0, 0.0])
    out = add_history_features(table, ["user"], {"click": values}, "day", smoothing=1e-9)
    assert _column(out, "user_hist_click")[3] == pytest.approx(1.0)  # the NaN on day 1 is skipped
    assert np.isfinite(_column(out, "user_hist_click")).all()


def test_counted_labels_give_past_positives_and_negatives() -> None:
    table, labels = _log()
    out = add_history_features(table, ["user"], labels, "day", counted=("click",))
    positives = np.expm1(_column(out, "user_hist_click_pos")).round()
    negatives = np.expm1(_column(out, "user_hist_click_neg")).round()
    assert positives.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert negatives.tolist() == [0, 0, 0, 1, 0, 0, 1]


def test_window_keeps_only_the_last_days() -> None:
    table, labels = _log()
    out = add_history_features(table, ["user"], labels, "day", window=1, prefix="recent")
    # user a on day 4 with a one-day window: day 3 holds no row of a
    assert np.expm1(_column(out, "user_recent_n")).round().tolist() == [0, 0, 0, 2, 1, 1, 0]
    assert "user_recent_first" not in out.column_names


def test_days_since_first_and_last_seen() -> None:
    codes = np.array([0, 0, 1, 0, 1, 1, 0])
    first, last = days_seen(codes, day_rank(np.array(DAYS)))
    assert first.tolist() == [0, 0, 0, 1, 1, 1, 3]
    assert last.tolist() == [0, 0, 0, 1, 1, 1, 2]


def test_day_rank_is_chronological_for_yyyymmdd() -> None:
    assert day_rank(np.array([20220410, 20220408, 20220410, 20220409])).tolist() == [2, 0, 2, 1]


def _config(**block):
    return config_from_dict({
        "data": {"day_column": "day"},
        "history": [{"entity": "user", "labels": ["click", "late"], "smoothing": 2.0, **block}],
        "history_labels": {"late": "where(day > 2, click, nan)"},
        "tasks": [{"name": "c", "type": "binary", "label": "click", "group": "engagement"}]})


def test_a_history_block_computes_what_add_history_features_computes() -> None:
    table = pa.table({"user": USERS, "day": DAYS, "click": CLICKS})
    cfg = _config(windows=["all", 2], counted=["click"])
    out = add_history(table, cfg)
    clicks = np.array(CLICKS)
    late = np.where(np.array(DAYS) > 2, clicks, np.nan)
    labels = {"click": clicks, "late": late}
    expected = add_history_features(table, ["user"], labels, "day", smoothing=2.0,
                                    counted=("click",))
    expected = add_history_features(expected, ["user"], labels, "day", smoothing=2.0, window=2,
                                    prefix="last2d", counted=("click",))
    names = [f.name for f in cfg.features]
    assert names == cfg.history[0].columns("all") + cfg.history[0].columns("2")
    for name in names:
        np.testing.assert_array_equal(_column(out, name), _column(expected, name), err_msg=name)


def test_precomputed_history_columns_are_kept_and_missing_inputs_named() -> None:
    cfg = _config()
    table = pa.table({"user": USERS, "day": DAYS, "click": CLICKS})
    computed = add_history(table, cfg)
    names = cfg.history[0].columns("all")
    precomputed = table
    for name in names:
        precomputed = precomputed.append_column(name, pa.array(np.full(len(USERS), 7.0)))
    kept = add_history(precomputed, cfg)
    assert kept.equals(precomputed) and not computed.equals(precomputed)
    with pytest.raises(DataError, match=r"column 'user': required column is missing"):
        add_history(table.drop(["user"]), cfg)


def test_history_as_of_end_is_what_a_row_on_the_next_day_reads() -> None:
    """Each row gets its key's features as of day 5 (the day after the last): the values a
    real row of that key on day 5 computes, not the ones of the key's own last row."""
    cfg = _config(windows=["all", 2], counted=["click"])
    table = add_history(pa.table({"user": USERS, "day": DAYS, "click": CLICKS}), cfg)
    served = history_as_of_end(table, cfg)
    probe = add_history(pa.table({"user": [*USERS, "a", "b"], "day": [*DAYS, 5, 5],
                                  "click": [*CLICKS, None, None]}), cfg)
    for name in [f.name for f in cfg.features]:
        a, b = _column(probe, name)[-2:]
        expected = np.where(np.array(USERS) == "a", a, b)
        np.testing.assert_array_equal(_column(served, name), expected, err_msg=name)
    # a's last row (day 4) did not count day 4 itself; served as of day 5 it does
    assert _column(table, "user_hist_n")[-1] == np.log1p(3)
    assert _column(served, "user_hist_n")[-1] == np.log1p(4)
    assert served.column_names == table.column_names

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from watchnext.data.errors import DataError
from watchnext.retrieve.log import LogColumns, WatchLog, times_in_seconds

from .conftest import DAY_MS, T0, log_table


def test_only_watched_rows_sorted_by_user_then_time():
    table = log_table([(2, "x", 0, 5, 1), (1, "y", 0, 9, 1), (1, "z", 0, 1, 1), (1, "w", 0, 3, 0)])
    log = WatchLog.from_table(table, LogColumns(watched="is_click"))
    watches = [(log.user_ids[u], log.item_ids[i]) for u, i in zip(log.users, log.items, strict=True)]
    assert sorted(watches) == [("1", "y"), ("1", "z"), ("2", "x")]  # "w" was not watched
    assert watches.index(("1", "z")) + 1 == watches.index(("1", "y"))  # in time order, adjacent
    assert log.now == (T0 + 9 * 60_000) / 1000  # the newest watch


def test_all_rows_without_a_watched_column_and_null_ids_skipped():
    table = pa.table({"user_id": [1, None, 2], "video_id": ["a", "b", None],
                      "time_ms": [T0, T0, T0]})
    log = WatchLog.from_table(table)
    assert len(log) == 1 and log.item_ids == ["a"]


def test_decay_halves_per_half_life():
    table = log_table([(1, "a", 0, 0, 1), (1, "b", 2, 0, 1)])
    log = WatchLog.from_table(table)
    assert np.allclose(log.decay(2.0), [0.5, 1.0])
    assert np.allclose(log.decay(0), [1.0, 1.0])


def test_time_formats():
    stamp = pa.array([dt.datetime(2022, 4, 8, 12)], pa.timestamp("ms"))
    assert times_in_seconds(stamp, "timestamp")[0] == dt.datetime(
        2022, 4, 8, 12, tzinfo=dt.UTC).timestamp()
    assert times_in_seconds(pa.array([20220408]), "date")[0] == dt.datetime(
        2022, 4, 8, tzinfo=dt.UTC).timestamp()
    assert times_in_seconds(pa.array([T0 + DAY_MS]), "time_ms")[0] == (T0 + DAY_MS) / 1000
    assert times_in_seconds(pa.array(["2022-04-08"]), "day")[0] == dt.datetime(
        2022, 4, 8, tzinfo=dt.UTC).timestamp()


def test_missing_column_is_named():
    table = pa.table({"user_id": [1], "time_ms": [T0]})
    with pytest.raises(DataError, match="video_id"):
        WatchLog.from_table(table)
    with pytest.raises(DataError, match="no time column"):
        WatchLog.from_table(pa.table({"user_id": [1], "video_id": [2]}))

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from watchnext.data.vocab import MISSING, OOV
from watchnext.retrieve.log import LogColumns
from watchnext.serve.context import derive, infer_utc_offset
from watchnext.serve.features import FeatureStore
from watchnext.serve.roles import CONSTANT, CONTEXT, ITEM, USER, infer_roles

WHEN = dt.datetime(2022, 4, 20, 3, 15, tzinfo=dt.UTC)  # 11:15 in Beijing, a Wednesday


def test_roles_of_the_kuairand_columns(serving):
    roles = serving.store.roles
    assert roles["user_id"] == USER and roles["video_id"] == ITEM
    assert roles["hour"] == CONTEXT and roles["weekday"] == CONTEXT
    expected = {"user_id_hist_": USER, "user_id_recent_": USER, "video_id_hist_": ITEM,
                "user_active_degree": USER, "register_days_range": USER, "duration_ms": ITEM}
    checked = 0
    for column, role in roles.items():
        for prefix, want in expected.items():
            if column.startswith(prefix):
                assert role == want, (column, role)
                checked += 1
    assert checked >= 3
    assert serving.store.fast


def test_roles_from_constancy_and_overrides():
    table = pa.table({"u": [1, 1, 2, 2], "v": [7, 8, 7, 8], "day": [1, 1, 1, 1],
                      "age": [30, 30, 40, 40], "len": [5, 9, 5, 9], "noise": [1, 2, 3, 4]})
    roles = infer_roles(table, ["u", "v", "age", "len", "noise"], user="u", item="v", device="",
                        day="day")
    assert roles == {"u": USER, "v": ITEM, "age": USER, "len": ITEM, "noise": CONSTANT}
    assert infer_roles(table, ["noise"], user="u", item="v", device="", day="day",
                       overrides={"noise": ITEM}) == {"noise": ITEM}
    with pytest.raises(ValueError, match="role for column"):
        infer_roles(table, ["noise"], user="u", item="v", device="", day="", overrides={"noise": "x"})


def test_local_time_offset_is_read_from_the_logs(logs, serving):
    assert infer_utc_offset(logs) == 8 * 60  # KuaiRand hours are Beijing time
    assert serving.store.offset == 480
    assert derive("hour", WHEN, 480, pa.int64()) == 11
    assert derive("weekday", WHEN, 480, pa.int64()) == 2
    assert derive("date", WHEN, 480, pa.int64()) == 20220420
    assert derive("date", WHEN, 0, pa.string()) == "2022-04-20"
    assert derive("time_ms", WHEN, 480, pa.int64()) == int(WHEN.timestamp() * 1000)


@pytest.mark.parametrize("user", ["first", "unknown", None])
def test_fast_path_equals_the_encoder_on_raw_columns(serving, user):
    store = serving.store
    user_id = {"first": next(iter(store.user_index)), "unknown": "no-such-user", None: None}[user]
    items = [*store.item_ids[:50], "no-such-video", store.item_ids[-1]]
    fast = store.encode(user_id, items, "android", WHEN)
    reference = store.encoder.transform(store.raw_table(user_id, items, "android", WHEN),
                                        targets=False)
    assert np.array_equal(fast.categorical, reference.categorical.numpy())
    assert np.array_equal(fast.dense, reference.dense.numpy())
    assert np.array_equal(fast.device, reference.device.numpy())
    assert fast.known_user == (user == "first")
    assert fast.known_items.tolist() == [True] * 50 + [False, True]


def test_cold_start_values(serving):
    store = serving.store
    names = [f.name for f in store.encoder.categorical]
    enc = store.encode("no-such-user", ["no-such-video"], None, WHEN)
    row = dict(zip(names, enc.categorical[0].tolist(), strict=True))
    assert row["user_id"] == OOV and row["video_id"] == OOV
    user_table = [f.name for f in store.encoder.categorical
                  if store.feature_roles[f.name] == USER and f.name != "user_id"]
    assert user_table and all(row[name] == MISSING for name in user_table)
    assert row["hour"] >= 2  # context is known even for a stranger
    assert np.isfinite(enc.dense).all()


def test_latest_values_win(logs):
    from tests.serve.conftest import tiny_config
    from watchnext.api import Ranker

    ranker = Ranker(tiny_config())
    ranker._build(logs)
    probe = FeatureStore.build(logs, ranker.encoder, LogColumns(watched="is_click"))
    # a plain user column (history columns are served as of the day after the logs instead)
    column = next(c for c, r in probe.roles.items() if r == USER and c != "user_id"
                  and "_hist_" not in c and "_recent_" not in c
                  and pa.types.is_string(logs.schema.field(c).type))
    first = logs.slice(0, 1)
    user, video = first["user_id"][0].as_py(), first["video_id"][0].as_py()
    later = first.set_column(first.schema.get_field_index("time_ms"), "time_ms",
                             pa.array([max(logs["time_ms"].to_pylist()) + 1]))
    later = later.set_column(later.schema.get_field_index(column), column, pa.array(["newest"]))
    table = pa.concat_tables([later, logs])  # the newest row comes first in the file
    store = FeatureStore.build(table, ranker.encoder, LogColumns(watched="is_click"))
    raw = store.raw_table(str(user), [str(video)], None, WHEN)
    assert raw[column][0].as_py() == "newest"
    assert probe.raw_table(str(user), [str(video)], None, WHEN)[column][0].as_py() != "newest"


def test_save_load_round_trip(tmp_path, serving):
    serving.store.save(tmp_path / "fs")
    loaded = FeatureStore.load(tmp_path / "fs", serving.store.encoder)
    items = serving.store.item_ids[:20]
    a = serving.store.encode("x", items, None, WHEN)
    b = loaded.encode("x", items, None, WHEN)
    assert np.array_equal(a.categorical, b.categorical) and np.array_equal(a.dense, b.dense)
    assert loaded.examples == serving.store.examples and loaded.examples["users"]

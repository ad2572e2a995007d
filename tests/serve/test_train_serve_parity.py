"""Train/serve parity: the features the service assembles for a logged (user, video, time) row
equal the features the ranker was trained on for that row, except where a documented rule says
otherwise (docs/retrieval.md, "Train/serve parity").

The store is built from two days of the bundled logs and judged on every row of the next day
whose user, video and (user, length class) pair it knows. The documented exceptions:
- ``hour`` and ``weekday``: served from the request time, trained from KuaiRand's ``hourmin``
  and ``date``, which disagree with the row's own timestamp on about a sixth of rows (a 9 h
  rather than 8 h shift: the log rounds the time up to the next hour); on the rows where they
  agree, these must match too;
- keys the store has not seen get cold defaults (not compared here);
- later days: the store is frozen at build time, so only the first day after it is exact.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from watchnext.data.encoder import FeatureEncoder
from watchnext.data.history import add_history, history_columns
from watchnext.retrieve.log import LogColumns, times_in_seconds
from watchnext.serve.features import FeatureStore

from .conftest import tiny_config

CONTEXT = {"hour", "weekday"}
UTC_OFFSET_S = 8 * 3600  # KuaiRand's local time (inferred by the store: infer_utc_offset)


@pytest.fixture(scope="module")
def three_days(splits):
    cfg = tiny_config()
    rows = splits["train"].filter(pc.less_equal(splits["train"]["date"], 20220410))
    computed = [c for cols in history_columns(cfg).values() for c in cols]
    rows = add_history(rows.drop_columns([c for c in computed if c in rows.column_names]), cfg)
    fit = rows.filter(pc.less_equal(rows["date"], 20220409))
    return cfg, fit, rows.filter(pc.equal(rows["date"], 20220410))


def test_served_features_equal_the_next_days_training_features(three_days):
    cfg, fit, next_day = three_days
    encoder = FeatureEncoder(cfg).fit(fit)
    store = FeatureStore.build(fit, encoder, LogColumns(watched="is_click"))
    assert store.roles["user_length_hist_n"] == "pair:user_length"
    trained = encoder.transform(next_day)
    times = times_in_seconds(next_day["time_ms"], "time_ms")
    names = [f.name for f in encoder.categorical] + [f.name for f in encoder.numeric]
    everything = np.arange(len(names))
    no_context = np.array([i for i, n in enumerate(names) if n not in CONTEXT])
    agrees = np.floor((times + UTC_OFFSET_S) / 3600) % 24 == next_day["hour"].to_numpy()
    assert 0.7 < agrees.mean() < 0.95  # the documented disagreement, measured
    pair = store.pairs["user_length"]
    compared = 0
    for i, (user, video) in enumerate(zip(next_day["user_id"].to_pylist(),
                                          next_day["video_id"].to_pylist(), strict=True)):
        user, video = str(user), str(video)
        if not (store.knows_user(user) and store.knows_item(video)
                and pair.row(user, video) is not None):
            continue
        served = store.encode(user, [video], None, dt.datetime.fromtimestamp(times[i], dt.UTC))
        served_row = np.r_[served.categorical[0], served.dense[0]]
        trained_row = np.r_[trained.categorical[i].numpy(), trained.dense[i].numpy()]
        same = np.isclose(served_row, trained_row, rtol=1e-6, atol=1e-6)
        checked = everything if agrees[i] else no_context
        assert same[checked].all(), (i, [names[j] for j in checked if not same[j]])
        compared += int(agrees[i])
    assert compared >= 300, compared


def test_the_store_serves_history_as_of_the_day_after_its_logs(three_days):
    """The raw values: a user's served history counts the user's rows of the last logged day
    (its last logged row does not: a row's history stops the day before it)."""
    cfg, fit, _ = three_days
    store = FeatureStore.build(fit, FeatureEncoder(cfg).fit(fit), LogColumns(watched="is_click"))
    users = fit["user_id"].to_numpy()
    days = fit["date"].to_numpy()
    user = int(users[days == 20220409][0])
    rows = int(np.sum(users == user))
    served = store.raw_table(str(user), [str(fit["video_id"][0].as_py())], None,
                             dt.datetime(2022, 4, 10, 12, tzinfo=dt.UTC))
    assert served["user_id_hist_n"][0].as_py() == pytest.approx(np.log1p(rows))
    logged = fit.filter(pa.compute.equal(fit["user_id"], user))["user_id_hist_n"].to_numpy()
    assert logged.max() < np.log1p(rows)

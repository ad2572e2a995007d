"""Prediction on what a caller has at serving time: feature columns only."""

import numpy as np
import pytest

from watchnext.api import Ranker
from watchnext.config import ConfigError
from watchnext.data.errors import DataError

TARGETS = ["is_click", "is_like", "watch_ms", "position", "request_id", "day"]


@pytest.fixture(scope="module")
def ranker():
    from tests.conftest import config_from_dict, make_impressions, small_config_dict

    return Ranker(config_from_dict(small_config_dict())).fit(make_impressions(1500, seed=5))


def test_a_candidates_only_table_is_scored(ranker, impressions):
    candidates = impressions.drop_columns(TARGETS)
    assert not set(TARGETS) & set(candidates.column_names)
    preds = ranker.predict(candidates)
    assert preds.shape == (len(impressions), 3) and np.isfinite(preds).all()
    np.testing.assert_array_equal(preds, ranker.predict(impressions))  # serving ignores targets
    scores = ranker.predict_score(candidates)
    assert scores.shape == (len(impressions),) and (scores > 0).all()


def test_with_position_uses_the_logged_slot(ranker, impressions):
    top = impressions.set_column(impressions.column_names.index("position"), "position",
                                 [np.ones(len(impressions), np.int64)])
    low = impressions.set_column(impressions.column_names.index("position"), "position",
                                 [np.full(len(impressions), 5, np.int64)])
    click_top = ranker.predict(top, with_position=True)[:, 0]
    click_low = ranker.predict(low, with_position=True)[:, 0]
    assert (click_top != click_low).any()
    np.testing.assert_array_equal(ranker.predict(top), ranker.predict(low))


def test_with_position_needs_the_position_column(ranker, impressions):
    with pytest.raises(DataError, match="'position'.*required column is missing"):
        ranker.predict(impressions.drop_columns(["position"]), with_position=True)


def test_a_missing_feature_is_named(ranker, impressions):
    with pytest.raises(DataError, match="'video_id'.*required column is missing"):
        ranker.predict(impressions.drop_columns(["video_id", "is_click"]))


def test_exponents_by_task_name(ranker, impressions):
    preds = ranker.predict(impressions)
    click_only = ranker.predict_score(impressions, exponents={"watch": 0, "like": 0})
    np.testing.assert_allclose(click_only, preds[:, 0], rtol=1e-5)
    np.testing.assert_allclose(ranker.predict_score(impressions, exponents=[1, 0, 0]), click_only)
    assert ranker.exponents({"like": 2.5}) == [1.0, 0.5, 2.5]
    with pytest.raises(ConfigError, match="unknown task 'likes'"):
        ranker.predict_score(impressions, exponents={"likes": 1})
    with pytest.raises(ConfigError, match="2 given, the model has 3 tasks"):
        ranker.predict_score(impressions, exponents=[1, 1])


def test_predict_table_keeps_keys_then_tasks_and_score(ranker, impressions):
    table = ranker.predict_table(impressions.drop_columns(TARGETS), keep=["user_id", "video_id"])
    assert table.column_names == ["user_id", "video_id", "click", "watch", "like", "score"]
    np.testing.assert_allclose(table["score"].to_numpy(), ranker.predict_score(impressions))
    with pytest.raises(DataError, match="'request_id'.*required column is missing"):
        ranker.predict_table(impressions.drop_columns(TARGETS), keep=["request_id"])


def test_score_is_deprecated_but_still_answers(ranker, impressions):
    with pytest.warns(DeprecationWarning, match="predict_score"):
        old = ranker.score(impressions)
    np.testing.assert_array_equal(old, ranker.predict_score(impressions))

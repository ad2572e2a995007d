import numpy as np
import pytest

from watchnext.data.errors import DataError
from watchnext.retrieve import PopularFresh, Query, TopicMatch
from watchnext.retrieve.popular import interleave

from .conftest import log_table


def test_topic_match_ranks_same_topic_by_popularity():
    rows = [(u, "x", 0, u, 1, "cats") for u in range(3)]  # x: 3 watches
    rows += [(u, "y", 0, 10 + u, 1, "cats") for u in range(2)]  # y: 2 watches
    rows += [(0, "z", 0, 20, 0, "cats|dogs")]  # z: shown only (0 watches)
    rows += [(1, "d", 0, 30, 1, "dogs")]
    source = TopicMatch(topic_column="topic").fit(log_table(rows))
    assert [c.item_id for c in source.candidates(Query(None, "y"), 10)] == ["x", "z"]
    # z is in two topics: both contribute, each item once
    assert [c.item_id for c in source.candidates(Query(None, "z"), 10)] == ["x", "y", "d"]
    # unknown video: the user's favourite topics stand in
    assert [c.item_id for c in source.candidates(Query("1", "new"), 1)] == ["x"]
    assert source.candidates(Query("stranger", "new"), 5) == []


def test_topic_uses_each_video_latest_topic():
    rows = [(0, "v", 0, 0, 1, "old"), (1, "v", 1, 0, 1, "new"), (2, "w", 1, 5, 1, "new"),
            (3, "o", 1, 6, 1, "old")]
    source = TopicMatch().fit(log_table(rows))
    assert [c.item_id for c in source.candidates(Query(None, "v"), 5)] == ["w"]


def test_topic_needs_its_column(tmp_path):
    with pytest.raises(DataError, match="topic"):
        TopicMatch(topic_column="genre").fit(log_table([(0, "v", 0, 0, 1)]))


def test_topic_save_load(tmp_path, two_communities):
    source = TopicMatch().fit(two_communities)
    source.save(tmp_path / "t")
    loaded = TopicMatch.load(tmp_path / "t")
    assert loaded.candidates(Query("0", "a0"), 5) == source.candidates(Query("0", "a0"), 5)


def test_popular_decays_and_reserves_room_for_fresh():
    rows = [(u, "old-hit", 0, u, 1) for u in range(6)]  # 6 watches, 10 days ago
    rows += [(u, "recent", 9, u, 1) for u in range(3)]  # 3 watches, 1 day ago
    rows += [(u, "steady", 0, 100 + u, 1) for u in range(2)] + [(9, "steady", 8, 0, 1)]
    rows += [(0, "brand-new", 10, 0, 1)]  # 1 watch, today: fresh
    source = PopularFresh(half_life_days=1.0, fresh_days=0.5, fresh_share=0.25).fit(log_table(rows))
    ranked = [c.item_id for c in source.candidates(Query(), 10)]
    assert ranked[:2] == ["recent", "steady"]  # decayed counts beat the old hit's raw count
    assert ranked.index("brand-new") == 3  # every 4th slot is fresh, despite one watch
    assert set(ranked) == {"old-hit", "recent", "steady", "brand-new"}
    assert "recent" not in [c.item_id for c in source.candidates(Query(None, "recent"), 10)]


def test_interleave_shares_and_never_repeats():
    merged = interleave(np.array([1, 2, 3, 4, 5, 6]), np.array([10, 11, 3]), 0.5)
    assert merged.tolist() == [1, 10, 2, 11, 3, 4, 5, 6]
    assert interleave(np.array([], np.int64), np.array([7, 8]), 0.0).tolist() == [7, 8]


def test_popular_save_load(tmp_path, two_communities):
    source = PopularFresh().fit(two_communities)
    source.save(tmp_path / "p")
    assert PopularFresh.load(tmp_path / "p").candidates(Query(), 7) == source.candidates(Query(), 7)
    with pytest.raises(ValueError, match="fresh_share"):
        PopularFresh(fresh_share=2.0)

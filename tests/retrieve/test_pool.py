import numpy as np
import pytest

from watchnext.retrieve import (
    CandidatePool,
    CandidateSource,
    CoWatch,
    PopularFresh,
    Query,
    RetrievalError,
    default_pool,
)
from watchnext.retrieve.log import LogColumns


class Fixed(CandidateSource):
    """A source that returns a fixed list (for checking the pool's merge rules)."""

    kind = "fixed"

    def __init__(self, items, columns=None):
        super().__init__(columns)
        self.item_ids = sorted(items, reverse=True)  # codes differ from the pool's on purpose
        self.order = np.array([self.item_index[i] for i in items])
        self.fitted = True

    def _fit(self, log, table):
        pass

    def retrieve(self, query, n):
        return self.allowed(self.order, np.ones(len(self.order)), query, n)

    def params(self):
        return {}

    def arrays(self):
        return {}

    def ids(self):
        return {}

    def _restore(self, arrays, ids):
        pass


def test_fixed_source_answers_as_listed():
    assert [c.item_id for c in Fixed(["b", "a", "c"]).candidates(Query(video_id="a"), 5)] == [
        "b", "c"]


def test_interleaves_deduplicates_and_keeps_sources():
    pool = CandidatePool({"one": Fixed(["a", "b", "c"]), "two": Fixed(["b", "d"])}, 10)
    out = pool.candidates(Query())
    assert [c.item_id for c in out] == ["a", "b", "d", "c"]
    b = next(c for c in out if c.item_id == "b")
    assert b.source == "two" and b.sources == ["two", "one"]
    assert next(c for c in out if c.item_id == "a").sources == ["one"]


def test_cap_quotas_and_fill():
    pool = CandidatePool({"one": Fixed(list("abcdef")), "two": Fixed(list("uvwxyz"))}, 6,
                         quotas={"one": 1, "two": 5})
    out = [c.item_id for c in pool.candidates(Query())]
    assert out == ["a", "u", "v", "w", "x", "y"]
    assert len(pool.candidates(Query(), limit=3)) == 3
    # quotas leave room unused by a short source: the second pass fills it
    short = CandidatePool({"one": Fixed(list("abcdef")), "two": Fixed(["u"])}, 4,
                          quotas={"one": 1, "two": 3})
    assert [c.item_id for c in short.candidates(Query())] == ["a", "u", "b", "c"]


def test_exclusions_reach_every_source():
    pool = CandidatePool({"one": Fixed(["a", "b"]), "two": Fixed(["b", "c"])}, 10)
    out = [c.item_id for c in pool.candidates(Query(video_id="a", exclude=frozenset({"c"})))]
    assert out == ["b"]


def test_cold_start_is_filled_by_popular(two_communities):
    pool = default_pool(two_communities, LogColumns(watched="is_click"), max_candidates=8)
    out = pool.candidates(Query("new-user", "new-video"))
    assert len(out) == 8 and {c.source for c in out} == {"popular"}
    known = pool.candidates(Query(None, "a0"))  # (user 0 watched every a: all left out)
    assert {"cowatch", "embedding", "topic"} <= {s for c in known for s in c.sources}
    assert len({c.item_id for c in known}) == len(known) <= 8


def test_default_pool_without_topic_column(two_communities):
    pool = default_pool(two_communities.drop(["topic"]), max_candidates=20)
    assert list(pool.sources) == ["cowatch", "embedding", "twotower", "popular"]
    assert sum(pool.quotas.values()) == 20
    assert "no 'topic' column" in pool.skipped["topic"]


def test_default_pool_shares_name_its_sources(two_communities):
    pool = default_pool(two_communities, max_candidates=10, shares={"twotower": 0.6, "popular": 0.4})
    assert pool.quotas == {"twotower": 6, "popular": 4} and pool.skipped == {}
    assert set(pool.fit_seconds) == {"twotower", "popular"}
    with pytest.raises(ValueError, match="unknown sources"):
        default_pool(two_communities, shares={"magic": 1.0})


def test_save_load(tmp_path, two_communities):
    pool = default_pool(two_communities, max_candidates=12)
    pool.save(tmp_path / "pool")
    loaded = CandidatePool.load(tmp_path / "pool")
    query = Query("3", "a1", frozenset({"a2"}))
    assert [(c.item_id, c.source, c.sources) for c in loaded.candidates(query)] == [
        (c.item_id, c.source, c.sources) for c in pool.candidates(query)]
    assert loaded.quotas == pool.quotas and loaded.max_candidates == 12


def test_load_errors(tmp_path, two_communities):
    with pytest.raises(RetrievalError, match="pool.json: missing"):
        CandidatePool.load(tmp_path)
    pool = CandidatePool({"cw": CoWatch(), "pop": PopularFresh()}).fit(two_communities)
    pool.save(tmp_path / "p")
    (tmp_path / "p" / "pool.json").write_text('{"sources": [{"name": "cw", "kind": "magic"}]}')
    with pytest.raises(RetrievalError, match="unknown source kind"):
        CandidatePool.load(tmp_path / "p")


def test_real_logs_pool(kuairand_train):
    pool = default_pool(kuairand_train, LogColumns(watched="is_click"), max_candidates=300)
    video = kuairand_train["video_id"][0].as_py()
    out = pool.candidates(Query(str(kuairand_train["user_id"][0].as_py()), str(video)))
    assert 0 < len(out) <= 300 and len({c.item_id for c in out}) == len(out)
    assert str(video) not in {c.item_id for c in out}
    assert {"cowatch", "embedding", "popular"} <= {c.source for c in out}


@pytest.fixture(scope="module")
def kuairand_train():
    from watchnext.data.datasets import load_dataset
    return load_dataset("kuairand-sample-v1")["train"]


def test_watched_videos_are_left_out_and_kept_through_save_and_load(tmp_path, two_communities):
    """User 0 watched a0..a4: none of them may come back to it, from any source."""
    pool = default_pool(two_communities, LogColumns(watched="is_click"), max_candidates=8)
    watched = {f"a{j}" for j in range(5)}
    assert pool.watched["0"] == watched
    out = {c.item_id for c in pool.candidates(Query("0", "a0"))}
    assert out and not out & watched
    assert {c.item_id for c in pool.candidates(Query("15", "b0"))} & {"a0", "a1"}  # not 15's
    loaded = CandidatePool.load(pool.save(tmp_path / "pool"))
    assert loaded.watched == pool.watched
    assert [c.item_id for c in loaded.candidates(Query("0", "a0"))] == [
        c.item_id for c in pool.candidates(Query("0", "a0"))]
    kept = default_pool(two_communities, LogColumns(watched="is_click"), max_candidates=8,
                        exclude_watched=False)
    assert kept.watched is None and {c.item_id for c in kept.candidates(Query("0", "a0"))} & watched
    assert CandidatePool.load(kept.save(tmp_path / "kept")).watched is None
    (tmp_path / "pool" / "watched_counts.npy").write_bytes(b"junk")
    with pytest.raises(RetrievalError, match="watched_users.npy: unreadable"):
        CandidatePool.load(tmp_path / "pool")

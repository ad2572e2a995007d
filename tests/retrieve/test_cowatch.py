import numpy as np
import pytest

from watchnext.retrieve import CoWatch, Query, RetrievalError
from watchnext.retrieve.log import LogColumns, WatchLog

from .conftest import log_table


def test_counts_with_gap_and_time_decay():
    # user 1 on day 0: a, b, c; user 2 on day 2 (the newest): a, b
    table = log_table([(1, "a", 0, 0, 1), (1, "b", 0, 1, 1), (1, "c", 0, 2, 1),
                       (2, "a", 2, 0, 1), (2, "b", 2, 1, 1)])
    source = CoWatch(window=2, half_life_days=2.0, with_weight=0.5).fit(table)
    items, weights = source.neighbours_of("a")
    named = dict(zip([source.item_ids[i] for i in items], weights.tolist(), strict=True))
    # a -> b: user 2 (decay 1, gap 1) + user 1 (decay 0.5, gap 1); a -> c: user 1, decay 0.5, gap 2
    assert named == pytest.approx({"b": 1.5, "c": 0.25}, rel=1e-3)
    assert [source.item_ids[i] for i in items] == ["b", "c"]
    # c was watched after a: "with" direction counts with_weight times as much
    items, weights = source.neighbours_of("c")
    named = dict(zip([source.item_ids[i] for i in items], weights.tolist(), strict=True))
    assert named == pytest.approx({"b": 0.5 * 0.5, "a": 0.5 * 0.25}, rel=1e-3)


def test_no_self_pairs_and_neighbour_cap():
    table = log_table([(1, "a", 0, 0, 1), (1, "a", 0, 1, 1), (1, "b", 0, 2, 1),
                       (1, "c", 0, 3, 1), (1, "d", 0, 4, 1)])
    source = CoWatch(window=5, max_neighbors=2).fit(table)
    items, _ = source.neighbours_of("a")
    assert len(items) == 2 and source.item_index["a"] not in items.tolist()


def test_candidates_skip_query_and_excluded_and_unknown(two_communities):
    columns = LogColumns(watched="is_click")
    source = CoWatch(columns).fit(two_communities, WatchLog.from_table(two_communities, columns))
    found = [c.item_id for c in source.candidates(Query("0", "a0"), 10)]
    assert found and "a0" not in found and all(v.startswith("a") for v in found)
    assert "a1" in found
    excluded = [c.item_id for c in source.candidates(Query("0", "a0", frozenset({"a1"})), 10)]
    assert "a1" not in excluded
    assert source.candidates(Query("0", "zzz"), 10) == []
    assert source.candidates(Query("0", None), 10) == []
    assert len(source.candidates(Query("0", "a0"), 2)) == 2


def test_save_load_round_trip(tmp_path, two_communities):
    source = CoWatch().fit(two_communities)
    source.save(tmp_path / "cw")
    assert sorted(p.suffix for p in (tmp_path / "cw").iterdir()) == [".json", ".npy", ".npy", ".npy"]
    loaded = CoWatch.load(tmp_path / "cw")
    assert loaded.candidates(Query("0", "a0"), 10) == source.candidates(Query("0", "a0"), 10)
    assert np.array_equal(loaded.indptr, source.indptr)


def test_load_refuses_wrong_kind_and_corrupt_files(tmp_path, two_communities):
    CoWatch().fit(two_communities).save(tmp_path / "cw")
    from watchnext.retrieve import PopularFresh
    with pytest.raises(RetrievalError, match="not 'popular'"):
        PopularFresh.load(tmp_path / "cw")
    (tmp_path / "cw" / "indptr.npy").write_bytes(b"garbage")
    with pytest.raises(RetrievalError, match="unreadable"):
        CoWatch.load(tmp_path / "cw")
    with pytest.raises(RetrievalError, match="missing"):
        CoWatch.load(tmp_path / "nowhere")

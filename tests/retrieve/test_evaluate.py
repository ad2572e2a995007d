"""Retrieval evaluation on hand-made logs whose recall can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from watchnext.data.errors import DataError
from watchnext.retrieve import CandidatePool, Query, RetrievalError, default_pool
from watchnext.retrieve.evaluate import _interval, evaluate_retrieval, positive_events, report_rows
from watchnext.retrieve.log import LogColumns

from .conftest import log_table
from .test_pool import Fixed

COLUMNS = LogColumns(watched="is_click")
SCORES = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 4.0, "e": 0.0}


def fixed_pool(max_candidates: int = 3) -> CandidatePool:
    """s1 ranks a, b, c and s2 d, e; one each by quota, so the pool for an unknown query is
    [a, d, b] (round-robin over the quotas, then beyond them)."""
    return CandidatePool({"s1": Fixed(["a", "b", "c"]), "s2": Fixed(["d", "e"])},
                         max_candidates, {"s1": 1, "s2": 1})


@pytest.fixture
def history():
    """Day 0: u1 clicks q (not in any source); u3 clicks a twice and c once."""
    return log_table([("u1", "q", 0, 0, 1), ("u3", "a", 0, 1, 1), ("u3", "a", 0, 2, 1),
                      ("u3", "c", 0, 3, 1), ("u3", "e", 0, 4, 0)])


@pytest.fixture
def held_out():
    """Day 1: u1 clicks b, e, then the unseen z; u2 clicks a and is shown d without a click."""
    return log_table([("u1", "b", 1, 0, 1), ("u1", "e", 1, 1, 1), ("u1", "z", 1, 2, 1),
                      ("u2", "d", 1, 0, 0), ("u2", "a", 1, 1, 1)])


def scorer(user, query, ids, when):
    return np.array([SCORES.get(i, 0.5) for i in ids])


def test_each_event_is_queried_with_the_users_previous_positive(history, held_out):
    events = positive_events(history, held_out, "is_click", COLUMNS)
    assert list(zip(events.users, events.items, events.queries, strict=True)) == [
        ("u1", "b", "q"), ("u1", "e", "b"), ("u1", "z", "e"), ("u2", "a", None)]


def test_recall_of_the_pool_its_sources_and_the_baselines(history, held_out):
    # Pools: u1 after q -> [a, d, b] (b found, at merge rank 3); u1 after b -> [a, d, c]
    # (e missed: s2 holds it beyond its quota of one); z is cold; u2 -> [a, d, b] (a found).
    report = evaluate_retrieval(fixed_pool(), history, held_out, ["is_click"], COLUMNS,
                                scorer=scorer)
    result = report["labels"]["is_click"]
    rows = result["rows"]
    assert result["events"] == 4 and result["cold_items"] == 0.25 and result["no_query"] == 1
    assert rows["pool"]["recall"]["value"] == 0.5
    assert rows["source:s1"]["recall"]["value"] == 0.5  # b and a in its top 3
    assert rows["source:s1"]["recall_in_quota"]["value"] == 0.25  # only a is its first
    assert rows["source:s2"]["recall"]["value"] == 0.25  # e
    assert rows["source:s2"]["recall_in_quota"]["value"] == 0.0
    assert rows["pool"]["median_merge_rank"] == 2.0  # merge ranks 3 and 1
    # Ranked by SCORES: b is 2nd of [a, d, b] and beats 1 of 2; a is last and beats none.
    assert rows["pool"]["median_rank"] == 2.5
    assert rows["pool"]["pairwise"]["value"] == 0.25
    # Shown and passed over: only u2 saw d (no click); d outscores u2's hit a.
    assert rows["pool"]["pairwise_exposed"]["value"] == 0.0
    assert rows["pool"]["pairwise_exposed"]["n"] == 1
    assert rows["pool"]["recall_at_10"]["value"] == 0.5  # a pool of 3: every hit is in the top 10
    # Most-clicked in the history: a (2), c, q (1 each); only u2's a is among them.
    assert rows["popular-only"]["recall"]["value"] == 0.25
    assert rows["random"]["mean_size"] == 3.0
    assert set(report["missing_sources"]) == {"cowatch", "embedding", "twotower", "topic", "popular"}
    # Pools [a, d, b], [a, d, c], [a, d, b], [a, d, b]: s1 found 8 of 12, and both hits.
    mix = rows["pool"]["source_mix"]
    assert mix["pool"] == mix["top_10"] == pytest.approx({"s1": 8 / 12, "s2": 4 / 12})
    assert mix["hits"] == {"s1": 1.0}
    assert result["pool_repeats"] == 0.0  # q, u1's only earlier click, is in no source


def test_a_pool_of_the_whole_catalogue_finds_every_warm_item(history, held_out):
    # Five catalogue items, five drawn: the random pool holds all but the query video.
    report = evaluate_retrieval(fixed_pool(5), history, held_out, ["is_click"], COLUMNS)
    rows = report["labels"]["is_click"]["rows"]
    assert rows["random"]["recall"]["value"] == 0.75
    assert rows["pool"]["recall"]["value"] == 0.75
    assert "recall_at_10" not in rows["pool"]  # no scorer, no ranking figures


def test_the_ranker_is_judged_on_its_top_10_only():
    items = [f"v{i:02d}" for i in range(30)]
    pool = CandidatePool({"s": Fixed(items)}, 30)
    history = log_table([("u0", "v00", 0, 0, 1), ("u1", "v01", 0, 1, 1), ("u1", "v02", 0, 2, 1)])
    held_out = log_table([("u1", "v05", 1, 0, 1), ("u2", "v25", 1, 0, 1)])

    def by_order(user, query, ids, when):  # earlier in the list scores higher
        return -np.array([int(i[1:]) for i in ids], float)

    result = evaluate_retrieval(pool, history, held_out, ["is_click"], COLUMNS,
                                scorer=by_order)["labels"]["is_click"]
    rows = result["rows"]["pool"]
    # u1 watches after v02, which the source leaves out: 29 candidates, v05 5th of them.
    # u2 has no query: 30 candidates, v25 26th.
    assert rows["recall"]["value"] == 1.0
    assert rows["recall_at_10"]["value"] == 0.5
    assert rows["median_rank"] == (5 + 26) / 2
    assert rows["hits_in_top_10_random_order"] == pytest.approx((10 / 29 + 10 / 30) / 2)
    assert rows["pairwise"]["value"] == pytest.approx((24 / 28 + 4 / 29) / 2)
    assert result["pool_repeats"] == 0.5  # u1's pool holds v01, clicked before; u2 has none


def test_no_source_is_fitted_on_the_evaluation_days():
    # Day 0: x and y are each clicked, never by the same user. Day 1: u9 clicks x, y hours later.
    day0 = [("u1", "x", 0, 0, 1), ("u1", "w", 0, 1, 1), ("u2", "y", 0, 0, 1), ("u2", "w", 0, 1, 1)]
    day1 = [("u9", "x", 1, 0, 1), ("u9", "y", 1, 600, 1)]
    fitting, held_out = log_table(day0), log_table(day1)
    pool = default_pool(fitting, COLUMNS, max_candidates=10)
    neighbours = [c.item_id for c in pool.sources["cowatch"].candidates(Query(video_id="x"), 10)]
    assert "y" not in neighbours and "w" in neighbours
    report = evaluate_retrieval(pool, fitting, held_out, ["is_click"], COLUMNS)
    assert report["labels"]["is_click"]["rows"]["source:cowatch"]["recall"]["value"] == 0.0
    assert report["fitted_until"] == pool.fitted_until
    # A pool fitted with day 1 included has seen the pair (x -> y), and is refused.
    leaked = default_pool(log_table(day0 + day1), COLUMNS, max_candidates=10)
    assert "y" in [c.item_id for c in leaked.sources["cowatch"].candidates(Query(video_id="x"), 10)]
    with pytest.raises(RetrievalError, match="seen the evaluation days"):
        evaluate_retrieval(leaked, fitting, held_out, ["is_click"], COLUMNS)
    # The learned source only knows the fitting days: not u9, whose history it cannot read.
    twotower = pool.sources["twotower"]
    assert "u9" not in twotower.user_ids and "u9" in leaked.sources["twotower"].user_ids
    assert twotower.candidates(Query("u9", None), 5) == []


class Counting(Fixed):
    calls = 0

    def retrieve(self, query, n):
        Counting.calls += 1
        return super().retrieve(query, n)


def test_each_source_is_asked_once_per_event(history, held_out):
    pool = CandidatePool({"s1": Counting(["a", "b", "c"]), "s2": Fixed(["d", "e"])}, 3)
    Counting.calls = 0
    evaluate_retrieval(pool, history, held_out, ["is_click"], COLUMNS)
    assert Counting.calls == 4  # four click events


def test_excluding_the_history_costs_the_repeat_clicks():
    """u1 clicked a, then c; on day 1 it clicks a again (after c), then b (after a)."""
    pool = CandidatePool({"s": Fixed(["a", "b", "c"])}, 3)
    history = log_table([("u1", "a", 0, 0, 1), ("u1", "c", 0, 1, 1)])
    held_out = log_table([("u1", "a", 1, 0, 1), ("u1", "b", 1, 1, 1)])
    kept = evaluate_retrieval(pool, history, held_out, ["is_click"], COLUMNS)["labels"]["is_click"]
    dropped = evaluate_retrieval(pool, history, held_out, ["is_click"], COLUMNS,
                                 exclude_history=True)["labels"]["is_click"]
    assert kept["repeat_items"] == dropped["repeat_items"] == 0.5  # a is a repeat, b is not
    # Kept: pools [a, b] and [b, c] find both clicks and hold one earlier click each.
    assert kept["rows"]["pool"]["recall"]["value"] == 1.0 and kept["pool_repeats"] == 1.0
    # Excluded: a and c never enter a pool: both pools are [b]; the repeat click of a is lost.
    assert dropped["rows"]["pool"]["recall"]["value"] == 0.5 and dropped["pool_repeats"] == 0.0


def test_the_pool_records_when_it_was_fitted_and_what_it_lacks(tmp_path, two_communities):
    pool = default_pool(two_communities.drop(["topic"]), COLUMNS)
    assert "no 'topic' column" in pool.skipped["topic"]
    loaded = CandidatePool.load(pool.save(tmp_path / "pool"))
    assert loaded.fitted_until == pool.fitted_until > 0
    assert loaded.skipped == pool.skipped


def test_a_missing_source_is_a_row_of_the_table(two_communities):
    logs = two_communities.drop(["topic"])
    pool = default_pool(logs, COLUMNS, max_candidates=5)
    report = evaluate_retrieval(pool, logs, log_table([("0", "a1", 2, 0, 1)]), ["is_click"],
                                COLUMNS)
    _, rows = report_rows(report)
    topic = [r for r in rows if r[1] == "source:topic"]
    assert topic and "missing (no 'topic' column" in topic[0][3]
    assert not any("…" in cell for row in rows for cell in row)


def test_a_missing_label_column_names_it(history, held_out):
    with pytest.raises(DataError, match="is_like"):
        evaluate_retrieval(fixed_pool(), history, held_out, ["is_like"], COLUMNS)


def test_intervals_are_wider_when_one_user_makes_the_events():
    values = [1.0, 1.0, 0.0, 0.0] * 5
    pairs = [f"u{i // 2}" for i in range(20)]  # ten users, each with two equal outcomes
    clustered = _interval(values, pairs)
    independent = _interval(values, [f"u{i}" for i in range(20)])
    assert clustered["value"] == independent["value"] == 0.5
    # Residuals summed per user: 10 users of +-1 against 20 of +-0.5.
    assert clustered["high"] - clustered["low"] == pytest.approx(
        2 * 1.959964 * (10 / 9 * 10) ** 0.5 / 20)
    assert independent["high"] - independent["low"] == pytest.approx(
        2 * 1.959964 * (20 / 19 * 5) ** 0.5 / 20)


def test_a_pool_size_beyond_the_pools_cap_is_refused(history, held_out):
    with pytest.raises(RetrievalError, match="outside 1..3"):
        evaluate_retrieval(fixed_pool(), history, held_out, ["is_click"], COLUMNS, pool_size=4)
    rows = evaluate_retrieval(fixed_pool(), history, held_out, ["is_click"], COLUMNS,
                              pool_size=2)["labels"]["is_click"]["rows"]
    assert rows["pool"]["mean_size"] == 2.0 and rows["random"]["mean_size"] == 2.0
    assert rows["pool"]["recall"]["value"] == 0.25  # [a, d]: only u2's a


def test_intervals_stay_within_0_and_1():
    few = _interval([1.0, 0.0, 0.0, 0.0, 0.0], ["a", "b", "c", "d", "e"])
    assert few["low"] == 0.0 and 0.2 < few["high"] < 1.0
    assert _interval([1.0], ["a"])["high"] == 1.0  # one user: nothing known about the spread

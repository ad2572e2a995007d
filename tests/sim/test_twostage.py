"""The two-stage system judged against the truth: an oracle scores perfectly, a pool that
misses the best videos cannot, and the report compares systems request by request."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from watchnext.sim import logs
from watchnext.sim.policies import PopularityPolicy, RandomPolicy, serve
from watchnext.sim.twostage import (
    catalogue_noise,
    catalogue_utility,
    clustered,
    fit_pool,
    judge,
    popular_candidates,
    served_outcomes,
    source_ablation,
    two_stage_report,
    with_request_time,
)


def test_an_oracle_over_the_catalogue_scores_one_and_a_blind_list_less(world):
    traffic = world.traffic(0, 50)
    utility = catalogue_utility(world, traffic)
    assert np.isneginf(utility[np.arange(50), traffic.query]).all()
    everything = np.broadcast_to(np.arange(utility.shape[1]), utility.shape)
    oracle = judge(utility, everything, np.where(np.isfinite(utility), utility, -1e9), 10)
    assert np.allclose(oracle["ndcg"], 1.0) and np.allclose(oracle["top_recall"], 1.0)
    # The worst ten videos: none of the true top 10, and a fraction of its gain.
    worst = np.argsort(np.where(np.isfinite(utility), utility, np.inf), axis=1)[:, :10]
    blind = judge(utility, worst, np.zeros(worst.shape), 10)
    assert (blind["pool_recall"] == 0).all() and (blind["ndcg"] < 0.5).all()


def test_recall_counts_the_true_top_k_by_hand():
    utility = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, -np.inf]])
    candidates = np.array([[0, 3, 4]])  # holds 0 of the top 2 (0, 1): recall 1/2
    out = judge(utility, candidates, np.array([[0.0, 2.0, 1.0]]), 2)  # serves 3, 4
    assert out["pool_recall"].tolist() == [0.5] and out["top_recall"].tolist() == [0.0]
    discount = 1 / np.log2([2, 3])
    expected = (np.exp([2.0, 1.0]) * discount).sum() / (np.exp([5.0, 4.0]) * discount).sum()
    assert out["ndcg"][0] == pytest.approx(expected)


def test_request_times_keep_each_users_order(world):
    traffic = world.traffic(1, 200)
    table = logs.impressions(world, traffic, serve(world, traffic, RandomPolicy()), "random")
    times = with_request_time(table, world)["time_s"].to_numpy()
    assert np.all(np.diff(times) >= 0)  # logs are in request order
    assert times.min() >= 1704153600 and times.max() < 1704153600 + 86400  # 2024-01-02


def test_report_on_a_small_world(world):
    days = []
    for day in range(2):
        traffic = world.traffic(day, 600)
        outcomes = serve(world, traffic, PopularityPolicy())
        days.append(logs.impressions(world, traffic, outcomes, "popularity"))
    table = pa.concat_tables(days)
    pool = fit_pool(table, world, 40, {"cowatch": 0.3, "topic": 0.3, "popular": 0.4})
    traffic = world.traffic(2, 80, stream=1)
    # The "ranker" here is the true utility itself: whatever the pool holds, it is ordered best.
    truth_rank = lambda t: world.truth(t).utility  # noqa: E731
    report = two_stage_report(world, table, pool, traffic, truth_rank,
                              lambda t: PopularityPolicy().scores(world, t))
    systems = report["systems"]
    assert set(report["sources"]) == {"cowatch", "topic", "popular", "random (baseline)"}
    two = systems["two-stage (watchnext pool + ranker)"]
    assert two["candidates"] == 40 and 0 <= two["ndcg"]["value"] <= 1
    # Ordered by the truth, the world's 30 candidates beat their popularity order.
    diff = report["two_stage_minus"]
    ranked, logged = (systems[f"world candidates + {s}"]["ndcg"]["value"]
                      for s in ("ranker", "logging policy"))
    assert ranked > logged
    assert set(diff) == set(systems) - {"two-stage (watchnext pool + ranker)"}


def test_clustered_interval_widens_when_a_users_requests_agree():
    values = np.r_[np.ones(50), np.zeros(50)]
    spread = clustered(values, np.arange(100))
    lumped = clustered(values, np.r_[np.zeros(50), np.ones(50)])
    assert spread["value"] == lumped["value"] == 0.5
    assert lumped["high"] - lumped["low"] > spread["high"] - spread["low"]


def test_responses_follow_the_video_not_its_slot(world):
    """Common random numbers by video: the same videos in another column order, scored the same,
    get the same responses; so two arms differ only through what they show."""
    traffic = world.traffic(3, 40)
    noise = catalogue_noise(world, traffic)
    rng = np.random.default_rng(0)
    candidates = np.array([rng.choice(300, 20, replace=False) for _ in range(40)])
    scores = rng.random(candidates.shape)
    flip = candidates[:, ::-1], scores[:, ::-1]
    a = served_outcomes(world, traffic, candidates, scores, noise)
    b = served_outcomes(world, traffic, *flip, noise)
    assert np.array_equal(a.click, b.click[:, ::-1]) and np.allclose(a.watch, b.watch[:, ::-1])
    assert a.click.any()


def test_source_ablation_arms_and_lifts(world):
    table = pa.concat_tables([logs.impressions(world, t, serve(world, t, PopularityPolicy()),
                                               "popularity")
                              for t in (world.traffic(d, 500) for d in range(2))])
    pool = fit_pool(table, world, 30, {"cowatch": 0.4, "topic": 0.3, "popular": 0.3})
    traffic = world.traffic(2, 60, stream=1)
    out = source_ablation(world, pool, traffic, lambda t: world.truth(t).utility,
                          np.arange(300))
    assert set(out["lifts"]) == {"without cowatch", "without topic", "without popular",
                                 "popular + cowatch", "popular + topic", "popular only"}
    lift = out["lifts"]["popular only"]["watch_time"]
    assert lift["low"] <= lift["lift"] <= lift["high"]
    assert set(out["metrics"]["all sources"]) >= {"watch_time", "like_rate", "mean_rating"}


def test_popular_only_follows_the_pools_rule_for_watched_videos(world):
    traffic = world.traffic(3, 4, stream=1)
    table = pa.table({"video_id": pa.array([5, 5, 5, 7, 7, 9], pa.int64()),
                      "click": pa.array([1, 1, 1, 1, 1, 1], pa.int8())})
    query = int(traffic.query[0])
    kept = popular_candidates(table, traffic, 2)
    assert [v for v in [5, 7, 9] if v != query][:2] == kept[0].tolist()
    # The first user clicked video 5 before: a pool that leaves it out is compared with a
    # popular list that leaves it out too; other users keep it.
    watched = {str(int(traffic.user[0])): frozenset({"5"})}
    out = popular_candidates(table, traffic, 2, watched)
    assert 5 not in out[0].tolist() and out[0].tolist() == [v for v in [7, 9] if v != query][:2]
    for r in range(1, 4):
        if int(traffic.user[r]) != int(traffic.user[0]):
            assert out[r].tolist() == kept[r].tolist()

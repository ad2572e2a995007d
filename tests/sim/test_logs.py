"""Impression logs: the trainer's schema, one row per shown slot, Parquet partitioned by day."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tests.sim.conftest import CONFIGS
from watchnext.config import load_config
from watchnext.data.encoder import FeatureEncoder
from watchnext.sim import logs
from watchnext.sim.policies import EpsilonMix, PopularityPolicy, serve


def test_impressions_one_row_per_slot_with_conditional_labels(world):
    traffic = world.traffic(0, 200)
    outcomes = serve(world, traffic, PopularityPolicy())
    table = logs.impressions(world, traffic, outcomes, "popularity")
    slots = world.config.slots
    assert table.num_rows == 200 * slots
    assert table["position"].to_pylist()[:slots] == list(range(1, slots + 1))
    click = table["click"].to_numpy().astype(bool)
    for label in ("watch_minutes", "like", "dismiss"):
        assert np.array_equal(pc.is_valid(table[label]).to_numpy(zero_copy_only=False), click)
    rated = pc.is_valid(table["rating"]).to_numpy(zero_copy_only=False)
    assert not (rated & ~click).any()
    assert click.sum() == outcomes.click.sum()
    hidden = {"quality", "clickbait", "utility", "satisfaction", "examined"}
    assert not hidden & set(table.column_names)


def test_logs_are_written_by_day_and_read_by_the_trainer(world, tmp_path):
    policy = EpsilonMix(PopularityPolicy(), 0.2)
    for day in range(2):
        traffic = world.traffic(day, 100)
        logs.write_day(logs.impressions(world, traffic, serve(world, traffic, policy), policy.name),
                       tmp_path, world.config.date(day))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day=2024-01-01", "day=2024-01-02"]
    assert pq.read_table(tmp_path / "day=2024-01-02" / "impressions.parquet").num_rows == 1000
    table = logs.read_days(tmp_path)
    assert table.num_rows == 2000
    cfg = load_config(CONFIGS / "sim_ranker.toml")
    batch = FeatureEncoder(cfg).fit(table).transform(table)
    assert len(batch) == 2000 and int(batch.position.max()) == world.config.slots


def test_candidate_table_has_unknown_position_unless_fixed(world):
    traffic = world.traffic(0, 10)
    table = logs.candidates(world, traffic)
    assert table.num_rows == 10 * world.config.candidates.count
    assert table["position"].null_count == table.num_rows
    assert set(logs.candidates(world, traffic, position=1)["position"].to_pylist()) == {1}
    assert table["video_id"].to_pylist()[:3] == traffic.candidates[0, :3].tolist()


def test_a_mix_that_explores_logs_random_on_its_randomised_requests(world):
    from watchnext.sim.policies import RandomPolicy, served_by
    from watchnext.sim.world import slate_positions

    traffic = world.traffic(0, 300)
    mix = EpsilonMix(PopularityPolicy(), 0.3)
    names = served_by(mix, world, traffic)
    table = logs.impressions(world, traffic, serve(world, traffic, mix), names)
    randomised = names == "random"
    assert 0.2 < randomised.mean() < 0.4
    assert set(table["policy"].to_pylist()) == {"random", "popularity"}
    shown = slate_positions(mix.scores(world, traffic), world.config.slots)
    random_slates = slate_positions(RandomPolicy().scores(world, traffic), world.config.slots)
    popular_slates = slate_positions(PopularityPolicy().scores(world, traffic), world.config.slots)
    assert np.array_equal(shown[randomised], random_slates[randomised])
    assert np.array_equal(shown[~randomised], popular_slates[~randomised])
    per_row = np.repeat(names, world.config.slots)
    assert table["policy"].to_pylist() == per_row.tolist()

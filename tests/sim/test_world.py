"""The world's mechanics: examination by position and device, clickbait, common random numbers."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from tests.sim.conftest import CONFIGS, SMALL_WORLD
from watchnext.config import ConfigError
from watchnext.sim.policies import PopularityPolicy, RandomPolicy, serve
from watchnext.sim.stats import spearman
from watchnext.sim.world import World, slate_positions
from watchnext.sim.world_config import WorldConfig, load_world, world_from_dict


def test_default_world_file_is_the_default_world():
    assert load_world(CONFIGS / "sim_world.toml") == WorldConfig()


def test_examination_falls_with_position_for_every_device(world):
    exam = world.exam[:, 1:]
    assert (np.diff(exam, axis=1) < 0).all()
    phone = world.config.devices[0]
    assert exam[0, 4] == pytest.approx(phone.exam_top * 5 ** -phone.exam_decay)


@pytest.fixture(scope="module")
def random_day(world):
    """20,000 requests served with random slates."""
    traffic = world.traffic(0, 20000)
    return traffic, serve(world, traffic, RandomPolicy())


def _device_mask(traffic, d):
    return np.broadcast_to((traffic.device == d)[:, None], traffic.shape)


def test_click_rate_falls_with_position_under_random_ranking(world, random_day):
    traffic, outcomes = random_day
    slots = np.arange(1, world.config.slots + 1)
    ctr = np.array([outcomes.click[outcomes.position == p].mean() for p in slots])
    assert spearman(ctr, -slots) > 0.95
    assert ctr[0] > 2 * ctr[-1]
    # Random slates: appeal is independent of the slot, so CTR / exam is flat per device.
    for d in range(len(world.config.devices)):
        mine = _device_mask(traffic, d)
        rate = np.array([outcomes.click[mine & (outcomes.position == p)].mean() for p in slots])
        ratio = rate / world.exam[d, 1:]
        assert ratio.max() / ratio.min() < 1.35, (world.config.devices[d].name, ratio)


def test_devices_differ_in_examination(world, random_day):
    traffic, outcomes = random_day
    names = world.config.device_names

    def tail_share(d):
        mine = _device_mask(traffic, d)
        return outcomes.click[mine & (outcomes.position >= 6)].sum() / outcomes.click[mine].sum()

    assert tail_share(names.index("tv")) < 0.8 * tail_share(names.index("desktop"))


def test_clickbait_raises_clicks_and_lowers_ratings(world):
    traffic = world.traffic(2, 5000)
    position = slate_positions(RandomPolicy().scores(world, traffic), world.config.slots)
    before = world.respond(traffic, position)
    baited = World(world.config)
    baited.clickbait = np.minimum(world.clickbait + 0.4, 1.0)
    after = baited.respond(traffic, position)
    # Same random numbers: more appeal can only add clicks; lower satisfaction only lowers answers.
    assert (after.click >= before.click).all() and after.click.sum() > 1.1 * before.click.sum()
    both = ~np.isnan(before.rating) & ~np.isnan(after.rating)
    assert both.sum() > 100
    assert (after.rating[both] <= before.rating[both]).all()
    assert after.rating[both].mean() < before.rating[both].mean() - 0.3
    assert after.like.sum() / after.click.sum() < before.like.sum() / before.click.sum()
    assert after.dismiss.sum() / after.click.sum() > before.dismiss.sum() / before.click.sum()


def test_clickbait_videos_get_more_clicks_but_worse_ratings_in_the_population(world, random_day):
    traffic, outcomes = random_day
    cb = world.clickbait[traffic.candidates]
    shown = outcomes.position > 0
    high, low = shown & (cb > 0.5), shown & (cb < 0.1)
    assert outcomes.click[high].mean() > 1.5 * outcomes.click[low].mean()
    assert np.nanmean(outcomes.rating[high]) < np.nanmean(outcomes.rating[low])


def test_common_random_numbers_give_arms_identical_traffic(world):
    a, b = world.traffic(4, 3000, stream=1), world.traffic(4, 3000, stream=1)
    for field in ("request_id", "user", "device", "query", "candidates"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    for name in a.noise:
        assert np.array_equal(a.noise[name], b.noise[name])
    other = world.traffic(4, 3000, stream=2)
    assert not np.array_equal(a.candidates, other.candidates)

    random_arm, popular_arm = serve(world, a, RandomPolicy()), serve(world, a, PopularityPolicy())
    # A candidate shown in the same slot by both arms gets the same response.
    same = (random_arm.position == popular_arm.position) & (random_arm.position > 0)
    assert same.sum() > 100
    for field in ("examined", "click", "watch", "like", "dismiss"):
        assert np.array_equal(getattr(random_arm, field)[same], getattr(popular_arm, field)[same])
    # Examined lower down implies examined higher up: the coupling is monotone in position.
    higher = (popular_arm.position > 0) & (random_arm.position > popular_arm.position)
    assert (popular_arm.examined[higher] >= random_arm.examined[higher]).all()


def test_candidates_are_distinct_and_exclude_the_query(world):
    traffic = world.traffic(5, 500)
    c = traffic.candidates
    assert c.shape == (500, world.config.candidates.count)
    assert all(len(set(row)) == len(row) for row in c)
    assert not (c == traffic.query[:, None]).any()
    same_topic = world.topic[c] == world.topic[traffic.query][:, None]
    assert same_topic.mean() > 2 / world.config.topics  # the query-topic generator is boosted


def test_world_is_a_function_of_its_seed():
    cfg = world_from_dict(copy.deepcopy(SMALL_WORLD))
    one, two = World(cfg), World(cfg)
    assert np.array_equal(one.quality, two.quality) and np.array_equal(one.interest, two.interest)
    three = World(dataclasses.replace(cfg, seed=1))
    assert not np.array_equal(one.quality, three.quality)
    assert np.array_equal(one.traffic(0, 50).candidates, two.traffic(0, 50).candidates)


@pytest.mark.parametrize("mutate, key", [
    (lambda r: r.update(slotz=3), "slotz"),
    (lambda r: r.update(slots=0), "slots"),
    (lambda r: r.setdefault("users", {}).update(count="many"), "users.count"),
    (lambda r: r.update(devices=[{"name": "phone", "share": 1.0, "exam_decay": -1.0}]),
     "devices[0].exam_decay"),
    (lambda r: r.update(devices=[{"name": "a", "share": 1.0}, {"name": "a", "share": 1.0}]),
     "devices[1].name"),
    (lambda r: r.setdefault("behaviour", {}).update(survey_rate=1.5), "behaviour.survey_rate"),
    (lambda r: r.setdefault("candidates", {}).update(count=5), "candidates.count"),
    (lambda r: r.update(start_date="yesterday"), "start_date"),
])
def test_bad_world_config_names_the_key(mutate, key):
    raw: dict = {}
    mutate(raw)
    with pytest.raises(ConfigError) as error:
        world_from_dict(raw)
    assert str(error.value).startswith(f"{key}:")

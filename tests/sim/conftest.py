"""Small worlds and experiment configs for fast simulator tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from watchnext.sim.world import World
from watchnext.sim.world_config import world_from_dict

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "watchnext" / "configs"

SMALL_WORLD = {"users": {"count": 400}, "videos": {"count": 300}}


@pytest.fixture(scope="module")
def world() -> World:
    return World(world_from_dict(copy.deepcopy(SMALL_WORLD)))


def tiny_experiment(**overrides) -> dict:
    """An A/B config that trains a one-epoch ranker on a few thousand impressions."""
    raw = {
        "name": "tiny", "kind": "arms", "seed": 3,
        "world": str(CONFIGS / "sim_world.toml"), "ranker": str(CONFIGS / "sim_ranker.toml"),
        "logging": {"policy": "popularity", "epsilon": 0.3, "days": 2, "requests_per_day": 400},
        "evaluation": {"requests": 400, "control": "popularity"},
        "arms": [
            {"name": "popularity", "policy": "popularity"},
            {"name": "random", "policy": "random"},
            {"name": "model", "model": {"num_experts": 2, "expert_units": [8], "bottom_units": [16]},
             "train": {"max_epochs": 1, "batch_size": 512}},
        ],
    }
    raw.update(overrides)
    return raw

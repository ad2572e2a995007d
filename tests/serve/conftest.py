"""One tiny servable model, built once per test session from a slice of the bundled real logs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import watchnext
from watchnext.config import RunConfig, load_config
from watchnext.data.datasets import load_dataset
from watchnext.serve import ModelRegistry, ServingModel
from watchnext.workflows import build_service

CONFIG = Path(watchnext.__file__).parent / "configs" / "kuairand_v1.toml"


IDS = [{"name": "user_id", "kind": "categorical", "embedding_dim": 8},
       {"name": "video_id", "kind": "categorical", "embedding_dim": 8}]


def tiny_config(seed: int = 0) -> RunConfig:
    """The kuairand-sample v1 features and tasks with a small, fast MMoE and one epoch.

    User and video id embeddings are added whether or not the tuned config uses them, so the
    serving paths for ids (OOV cold start) are always exercised.
    """
    base = load_config(CONFIG)
    features = IDS + [f for f in base.to_dict()["features"] if f["name"] not in {"user_id", "video_id"}]
    return base.replace(
        features=features,
        model={"bottom_units": [32], "num_experts": 2, "expert_units": [16], "tower_units": [8]},
        train={"max_epochs": 1, "progress": False, "seed": seed, "batch_size": 512})


@pytest.fixture(scope="session")
def splits() -> dict[str, pa.Table]:
    return load_dataset("kuairand-sample-v1")


@pytest.fixture(scope="session")
def logs(splits) -> pa.Table:
    """A slice of the training days: enough users and videos, fast to train on."""
    return splits["train"].slice(0, 4000)


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory, logs) -> Path:
    """models/v1: the tiny model. (Tests that need more versions copy it.)"""
    root = tmp_path_factory.mktemp("models")
    build_service(tiny_config(), logs, root / "v1", max_candidates=200, log=lambda _m: None)
    return root


@pytest.fixture(scope="session")
def model_dir(registry_root) -> Path:
    return registry_root / "v1"


@pytest.fixture(scope="session")
def device_model_dir(tmp_path_factory, logs) -> Path:
    """A model with the shallow tower over position x device (devices 'android' and 'ios')."""
    rng = np.random.default_rng(0)
    table = logs.slice(0, 3000)
    table = table.append_column("pos", pa.array(rng.integers(1, 6, table.num_rows)))
    table = table.append_column("device", pa.array(rng.choice(["android", "ios"],
                                                              table.num_rows)))
    cfg = tiny_config().replace(bias={"position": "pos", "device": "device", "max_position": 5})
    return build_service(cfg, table, tmp_path_factory.mktemp("dev") / "v1", max_candidates=40,
                         log=lambda _m: None)


@pytest.fixture(scope="session")
def serving(model_dir) -> ServingModel:
    return ServingModel.load(model_dir)


@pytest.fixture
def fresh_registry(tmp_path, model_dir) -> Path:
    """A registry of our own with v1 and v2 (a copy), safe to modify."""
    for version in ("v1", "v2"):
        shutil.copytree(model_dir, tmp_path / version)
    return tmp_path


@pytest.fixture
def loaded_registry(fresh_registry) -> ModelRegistry:
    registry = ModelRegistry(fresh_registry)
    registry.load("v1")
    return registry

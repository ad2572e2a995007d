"""Shared fixtures: a small synthetic impression log with known structure, and a config for it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from watchnext.config import RunConfig, config_from_dict

# Unit tests use tiny models: one thread avoids oversubscribing CI's two cores.
torch.set_num_threads(1)

DEVICES = np.array(["phone", "tablet", "tv"])


def make_impressions(n: int = 3000, seed: int = 0, n_users: int = 50, n_videos: int = 80) -> pa.Table:
    """Clicks depend on video quality and fall with position; likes on quality alone."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n)
    video = rng.integers(0, n_videos, n)
    position = rng.integers(1, 6, n)
    device = DEVICES[rng.integers(0, len(DEVICES), n)]
    quality = np.linspace(-2, 2, n_videos)[video]
    p_click = 1 / (1 + np.exp(-(quality - 0.4 * position + 1)))
    click = (rng.random(n) < p_click).astype(np.int64)
    like = (rng.random(n) < 1 / (1 + np.exp(-quality))).astype(np.int64)
    watch_ms = click * rng.exponential(20000, n) * (1 + (quality > 0))
    return pa.table({
        "request_id": np.arange(n) // 5, "user_id": user, "video_id": [f"v{v}" for v in video],
        "device": device, "position": position, "hour": rng.integers(0, 24, n),
        "duration_ms": rng.integers(5000, 60000, n), "tags": [f"t{v % 3}|t{v % 5}" for v in video],
        "day": 1 + np.arange(n) * 3 // n, "is_click": click, "is_like": like, "watch_ms": watch_ms,
    })


def small_config_dict(**model) -> dict:
    return {
        "name": "synthetic",
        "data": {"user_column": "user_id", "request_column": "request_id", "day_column": "day"},
        "features": [
            {"name": "user_id", "kind": "categorical", "embedding_dim": 4},
            {"name": "video_id", "kind": "categorical", "embedding_dim": 4},
            {"name": "hour", "kind": "categorical", "embedding_dim": 2},
            {"name": "tags", "kind": "multi_categorical", "embedding_dim": 3, "max_length": 4},
            {"name": "length", "kind": "numeric", "expression": "duration_ms / 1000",
             "transform": "log1p_standardize"},
        ],
        "tasks": [
            {"name": "click", "type": "binary", "label": "is_click", "group": "engagement"},
            {"name": "watch", "type": "regression", "label": "log1p(watch_ms / 1000)",
             "group": "engagement", "loss_weight": 0.5, "exponent": 0.5},
            {"name": "like", "type": "binary", "label": "is_like", "group": "satisfaction"},
        ],
        "bias": {"position": "position", "device": "device", "max_position": 8},
        "model": {"kind": "mmoe", "bottom_units": [16], "num_experts": 4, "expert_units": [8],
                  "tower_units": [4], **model},
        "train": {"batch_size": 256, "learning_rate": 0.01, "max_epochs": 3, "patience": 1,
                  "seed": 0, "progress": False},
    }


@pytest.fixture
def impressions() -> pa.Table:
    return make_impressions()


@pytest.fixture
def config() -> RunConfig:
    return config_from_dict(small_config_dict())

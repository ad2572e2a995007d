"""Synthetic day-partitioned impression logs for the streaming, distributed and crash tests."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from watchnext.config import RunConfig, config_from_dict

DEVICES = np.array(["phone", "tablet", "tv"])


def impressions(n: int, seed: int) -> pa.Table:
    """Clicks depend on the video and fall with position; likes on the video alone."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 40, n)
    position = rng.integers(1, 6, n)
    quality = np.linspace(-2, 2, 40)[video]
    click = (rng.random(n) < 1 / (1 + np.exp(-(quality - 0.4 * position + 1)))).astype(np.int64)
    return pa.table({
        "user_id": rng.integers(0, 30, n), "video_id": [f"v{v}" for v in video],
        "device": DEVICES[rng.integers(0, 3, n)], "position": position,
        "duration_ms": rng.integers(5000, 60000, n).astype(np.float64),
        "tags": [f"t{v % 3}|t{v % 5}" for v in video],
        "is_click": click, "is_like": (rng.random(n) < 1 / (1 + np.exp(-quality))).astype(np.int64),
    })


def write_days(root: Path, days: int = 2, files_per_day: int = 2, rows_per_file: int = 500,
               seed: int = 0, row_group_size: int | None = None) -> list[Path]:
    """``root/day=YYYY-MM-DD/part-K.parquet`` files; returns them in order."""
    paths = []
    start = datetime.date(2024, 3, 1)
    for d in range(days):
        folder = root / f"day={start + datetime.timedelta(days=d)}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(files_per_day):
            path = folder / f"part-{k}.parquet"
            pq.write_table(impressions(rows_per_file, seed * 1000 + d * 10 + k), path,
                           row_group_size=row_group_size, write_page_checksum=True)
            paths.append(path)
    return paths


def config_dict(batch_size: int = 64, **model) -> dict:
    return {
        "name": "stream-test",
        "features": [
            {"name": "user_id", "kind": "categorical", "embedding_dim": 4},
            {"name": "video_id", "kind": "categorical", "embedding_dim": 4},
            {"name": "tags", "kind": "multi_categorical", "embedding_dim": 3, "max_length": 4},
            {"name": "length", "kind": "numeric", "expression": "duration_ms / 1000",
             "transform": "log1p_standardize"},
        ],
        "tasks": [
            {"name": "click", "type": "binary", "label": "is_click", "group": "engagement"},
            {"name": "like", "type": "binary", "label": "is_like", "group": "satisfaction"},
        ],
        "bias": {"position": "position", "device": "device", "max_position": 8},
        "model": {"kind": "mmoe", "bottom_units": [16], "num_experts": 3, "expert_units": [8],
                  "tower_units": [4], **model},
        "train": {"batch_size": batch_size, "learning_rate": 0.01, "seed": 0, "progress": False,
                  "threads": 1},
    }


def stream_config(batch_size: int = 64, **model) -> RunConfig:
    return config_from_dict(config_dict(batch_size, **model))


def write_config(path: Path, batch_size: int = 64, **model) -> Path:
    """The config as JSON (``load_config`` reads JSON as well as TOML), for CLI subprocesses."""
    path.write_text(json.dumps(config_dict(batch_size, **model)))
    return path

"""``train_stream``: the training loop over ``day=YYYY-MM-DD/`` Parquet partitions on disk.

The loop, step, checkpoints and resume are those of every other way to train (train/loop.py);
this entry point adds the data folder, an optional validation file, and the process settings a
training command makes (threads, allocator). Run it plainly or under ``torchrun``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from watchnext.config import RunConfig
from watchnext.data.io import read_tables
from watchnext.train.loop import LoopOptions, LoopResult, train
from watchnext.train.sources import ParquetSource
from watchnext.train.speed import apply_process_settings


def train_stream(config: RunConfig, data: str | Path, run_dir: str | Path,
                 options: LoopOptions | None = None, valid: str | Path | None = None,
                 log: Callable[[str], None] | None = None) -> LoopResult:
    """Stream the partitions under ``data`` into a run folder; ``valid`` (a file or folder) is
    evaluated after each day. Raises ``DataError``, ``CheckpointError`` or ``ConfigError``."""
    apply_process_settings(config.train)
    table = read_tables(str(valid)) if valid else None
    return train(config, ParquetSource(data), run_dir, options, valid=table, log=log)

"""Where a service build gets its logs: explicit files, the config's paths, or its dataset."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from watchnext.config import ConfigError, RunConfig
from watchnext.data.datasets import load_dataset
from watchnext.data.io import read_tables


def training_tables(config: RunConfig, train: Sequence[str] | None = None,
                    valid: Sequence[str] | None = None) -> tuple[pa.Table, pa.Table | None]:
    """(train, valid) from explicit paths, else ``data.train``/``data.valid``, else
    ``data.dataset`` (a bundled protocol's train and valid splits)."""
    if train:
        return read_tables(list(train)), read_tables(list(valid)) if valid else None
    if config.data.train:
        return (read_tables(list(config.data.train)),
                read_tables(list(config.data.valid)) if config.data.valid else None)
    if config.data.dataset:
        splits = load_dataset(config.data.dataset)
        return splits["train"], splits.get("valid")
    raise ConfigError("data: no training logs (give --train, data.train or data.dataset)")

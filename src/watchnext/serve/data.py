"""Where a service build gets its logs: explicit files, else the config's one source."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from watchnext.config import RunConfig
from watchnext.data import sources
from watchnext.data.io import read_tables


def training_tables(config: RunConfig, train: Sequence[str] | None = None,
                    valid: Sequence[str] | None = None) -> tuple[pa.Table, pa.Table | None]:
    """(train, valid) from explicit paths (history features added as the config declares), else
    the same tables ``watchnext train`` reads (``watchnext.data.sources``)."""
    if train:
        tables = {"train": read_tables(list(train))}
        if valid:
            tables["valid"] = read_tables(list(valid))
        splits = sources.with_history(tables, config)
    else:
        splits = sources.load_splits(config)
    return splits["train"], splits.get("valid")

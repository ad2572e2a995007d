"""Bundled real datasets, each with its license, and the benchmark protocols built on them."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pyarrow as pa

from watchnext.config import ConfigError, RunConfig


def bundled_path(name: str) -> Path:
    """The folder of a bundled dataset inside the installed package."""
    return Path(str(resources.files("watchnext.data.datasets") / name))


def load_dataset(name: str, config: RunConfig | None = None) -> dict[str, pa.Table]:
    """The named protocol's splits (``train``, ``valid``, ``test``; more where defined), with the
    history features of ``config``'s ``[[history]]`` blocks (or the protocol's own)."""
    from watchnext.data.datasets import kuairand, open_bandit
    from watchnext.data.history import split_history

    registry: dict[str, Callable[[], dict[str, pa.Table]]] = {
        kuairand.PROTOCOL: lambda: kuairand.load_splits(config),
        open_bandit.PROTOCOL: lambda: split_history(open_bandit.load_splits(), config),
    }
    if name not in registry:
        raise ConfigError(f"data.dataset: unknown dataset {name!r}; bundled: "
                          f"{', '.join(sorted(registry))}")
    return registry[name]()

"""Bundled real datasets, each with its license, and the benchmark protocols built on them."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pyarrow as pa

from watchnext.data.errors import DataError


def bundled_path(name: str) -> Path:
    """The folder of a bundled dataset inside the installed package."""
    return Path(str(resources.files("watchnext.data.datasets") / name))


def load_dataset(name: str) -> dict[str, pa.Table]:
    """The named protocol's splits (``train``, ``valid``, ``test``; more where defined)."""
    from watchnext.data.datasets import kuairand, open_bandit

    registry: dict[str, Callable[[], dict[str, pa.Table]]] = {
        kuairand.PROTOCOL: kuairand.load_splits,
        open_bandit.PROTOCOL: open_bandit.load_splits,
    }
    if name not in registry:
        raise DataError(f"unknown dataset {name!r}; bundled: {', '.join(sorted(registry))}")
    return registry[name]()

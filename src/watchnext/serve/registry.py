"""The model registry: versioned model directories and an atomic swap between them.

A registry root is either one model directory (it is its only version) or a folder of them:

    models/
      v1/   service.json, ...
      v2/   service.json, ...

Versions sort naturally (v2 < v10). At start (``load``) the newest version that loads is served,
so a broken newest version does not keep the service down. ``reload`` loads and smoke-tests the
new version completely *before* swapping one reference under a lock, so requests that already hold
the old model finish on it, and a broken version is refused while the old one keeps serving.
Every load, swap and refusal is logged (logger ``watchnext.serve``) with its version.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

from watchnext.serve.model_dir import MANIFEST, ModelDirError
from watchnext.serve.service import BackendChoice, ServingModel

log = logging.getLogger("watchnext.serve")
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class VersionNotFound(LookupError):
    """The named version is not in the registry."""


class ReloadInProgress(RuntimeError):
    """Another reload is running; reloads are serialised."""


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class ModelRegistry:
    """Serves one ``ServingModel`` at a time from a root of versioned model directories."""

    def __init__(self, root: str | Path, backend: BackendChoice = "auto", threads: int = 1,
                 loader: Callable[..., ServingModel] = ServingModel.load):
        self.root = Path(root)
        self.backend, self.threads, self.loader = backend, threads, loader
        self._current: ServingModel | None = None
        self._swap = threading.Lock()
        self._reloading = threading.Lock()
        self.reloads = {"success": 0, "failure": 0}

    @property
    def single(self) -> bool:
        """True when the root itself is a model directory."""
        return (self.root / MANIFEST).is_file()

    def versions(self) -> list[str]:
        if self.single:
            return [self.root.name]
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir()
                 if p.is_dir() and VERSION_NAME.match(p.name) and (p / MANIFEST).is_file()]
        return sorted(names, key=_natural_key)

    def path_of(self, version: str) -> Path:
        if not VERSION_NAME.match(version):
            raise VersionNotFound(f"invalid version name {version!r} (letters, digits, . _ -)")
        if self.single:
            if version != self.root.name:
                raise VersionNotFound(f"version {version!r} not found; this registry serves only "
                                      f"{self.root.name!r}")
            return self.root
        if version not in self.versions():
            raise VersionNotFound(f"version {version!r} not found in {self.root} "
                                  f"(have: {', '.join(self.versions()) or 'none'})")
        return self.root / version

    @property
    def current(self) -> ServingModel | None:
        return self._current

    def load(self, version: str | None = None) -> ServingModel:
        """Load ``version`` and make it current; raises on failure.

        Without a version, the newest version that loads: broken newer ones are refused (and
        logged) on the way down. ``ModelDirError`` when none loads, naming each refusal.
        """
        if version is not None:
            return self.reload(version)[0]
        available = self.versions()
        if not available:
            raise VersionNotFound(f"{self.root}: no model versions found")
        refused: dict[str, ModelDirError] = {}
        for candidate in reversed(available):
            try:
                model = self.reload(candidate)[0]
            except ModelDirError as exc:
                refused[candidate] = exc
                continue
            if refused:
                log.warning("serving %s, not the newest version: refused %s", candidate,
                            ", ".join(refused))
            return model
        raise ModelDirError(f"{self.root}: no version loads ("
                            f"{'; '.join(f'{v}: {e}' for v, e in refused.items())})")

    def reload(self, version: str | None = None) -> tuple[ServingModel, ServingModel | None]:
        """Load a version fully, then swap it in. Returns (new, previous).

        Raises ``VersionNotFound``, ``ReloadInProgress`` or ``ModelDirError``; on any failure
        the current model is untouched.
        """
        if not self._reloading.acquire(blocking=False):
            raise ReloadInProgress("a reload is already in progress; try again when it finishes")
        try:
            if version is None:
                available = self.versions()
                if not available:
                    raise VersionNotFound(f"{self.root}: no model versions found")
                version = available[-1]
            path = self.path_of(version)
            serving = self._current.version if self._current else None
            try:
                model = self.loader(path, version=version, backend=self.backend,
                                    threads=self.threads)
            except ModelDirError as exc:
                self._refused(version, exc, serving)
                raise
            except Exception as exc:  # any failure to load means: refuse it, keep the old one
                error = ModelDirError(f"{path}: cannot load ({type(exc).__name__}: {exc})")
                self._refused(version, error, serving)
                raise error from exc
            with self._swap:
                previous, self._current = self._current, model
            self.reloads["success"] += 1
            log.info("serving model %s (%s backend)%s", version, model.backend.name,
                     f", was {previous.version}" if previous else f", loaded from {path}")
            return model, previous
        finally:
            self._reloading.release()

    def _refused(self, version: str, error: ModelDirError, serving: str | None) -> None:
        self.reloads["failure"] += 1
        log.error("refused model %s: %s; %s", version, error,
                  f"still serving {serving}" if serving else "serving nothing yet")

"""One loaded model version, answering watch-next and scoring requests in-process.

    candidates = pool(user, video)                  retrieval: sources pooled, de-duplicated
    inputs     = feature_store(user, candidates, device, time)
    preds, s   = serving_graph(inputs)              position missing, score = prod_t pred_t^w_t
    top k by s

A ``ServingModel`` is immutable once loaded, so a request that picked it up finishes on it even
if the registry swaps in another version meanwhile.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from watchnext.config import RunConfig
from watchnext.data.scan import DEVICE_VOCAB
from watchnext.retrieve.base import Query, RetrievalError
from watchnext.retrieve.pool import CandidatePool
from watchnext.serve.backends import (
    PARITY_TOLERANCE,
    Backend,
    OnnxBackend,
    ServingGraph,
    TorchBackend,
    max_score_difference,
    median_seconds,
)
from watchnext.serve.features import FeatureStore
from watchnext.serve.model_dir import (
    ONNX_FILE,
    ModelDirError,
    load_ranker,
    parity_inputs,
    read_manifest,
)

BackendChoice = Literal["auto", "onnx", "torch"]
CALLER = "caller"
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\\-])(?:[A-Za-z]:)?(?:[/\\][^/\\\s'\"]+)+[/\\]([^/\\\s'\"]+)")


@dataclass
class RankedItem:
    video_id: str
    score: float
    predictions: dict[str, float]
    source: str
    sources: list[str]
    known_video: bool
    details: dict[str, Any] | None = None


@dataclass
class Ranking:
    items: list[RankedItem]
    model_version: str
    known_user: bool
    known_video: bool
    candidates: int
    timings_ms: dict[str, float] = field(default_factory=dict)


class ServingModel:
    """A model directory loaded for serving: pool, feature store and the chosen backend."""

    def __init__(self, directory: Path, version: str, manifest: dict[str, Any], pool: CandidatePool,
                 store: FeatureStore, backend: Backend, config: RunConfig,
                 backend_report: dict[str, Any]):
        self.directory, self.version, self.manifest = directory, version, manifest
        self.pool, self.store, self.backend = pool, store, backend
        self.config, self.task_names = config, config.task_names
        self.backend_report = backend_report
        vocabulary = store.encoder.vocabularies.get(DEVICE_VOCAB)
        # the device values the model learned (empty: it has no device input); read per request
        self.devices: list[str] = list(vocabulary.values) if vocabulary is not None else []

    @classmethod
    def load(cls, directory: str | Path, version: str | None = None,
             backend: BackendChoice = "auto", threads: int = 1) -> ServingModel:
        """Verify and load a model directory; anything wrong raises ``ModelDirError``."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        ranker = load_ranker(directory)
        try:
            pool = CandidatePool.load(directory / "retrieval")
            store = FeatureStore.load(directory / "features", ranker.encoder)
        except (RetrievalError, OSError, ValueError, KeyError) as exc:
            raise ModelDirError(f"{directory}: cannot load serving artefacts ({exc})") from exc
        graph = ServingGraph(ranker.model, ranker.config.tasks)
        chosen, report = _choose_backend(directory, manifest, graph, store, backend, threads)
        model = cls(directory, version or directory.name, manifest, pool, store, chosen,
                    ranker.config, report)
        model.smoke_test()
        return model

    def smoke_test(self) -> None:
        """A cold-start request end to end; a model that cannot answer it is refused."""
        ranking = self.watch_next(None, None, None, k=5)
        bad = [i for i in ranking.items if not np.isfinite(i.score)]
        if not ranking.items or bad:
            raise ModelDirError(f"{self.directory}: smoke test failed "
                                f"({'no items' if not ranking.items else 'non-finite scores'})")

    def describe(self) -> dict[str, Any]:
        """What any caller may see: no paths on the server's disk (the ONNX export's failure
        reason, written at build time, may hold one: only its file name is kept)."""
        return {"version": self.version, "backend": self.backend.name,
                "backend_report": _without_paths(self.backend_report),
                "tasks": self.task_names, "devices": self.devices,
                "retrieval": self.pool.describe(), "users": len(self.store.user_index),
                "videos": len(self.store.item_ids), "created": self.manifest.get("created")}

    def watch_next(self, user_id: str | None, video_id: str | None, device: str | None,
                   k: int = 10, exclude: list[str] | tuple[str, ...] = (),
                   when: dt.datetime | None = None, details: bool = False) -> Ranking:
        """Retrieve candidates for (user, video), rank them and return the top ``k``."""
        start = time.perf_counter()
        pooled = self.pool.merge(Query(user_id, video_id, frozenset(exclude)))
        retrieved = time.perf_counter()

        def origin(i: int) -> tuple[str, list[str]]:
            return pooled.source_names[pooled.source[i]], pooled.sources_of(i)

        ranking = self._rank(user_id, video_id, device, pooled.ids, origin, k, when, details)
        ranking.timings_ms["retrieval"] = (retrieved - start) * 1e3
        return ranking

    def score(self, user_id: str | None, video_id: str | None, device: str | None,
              candidates: list[str], k: int | None = None, when: dt.datetime | None = None,
              details: bool = False) -> Ranking:
        """Rank caller-supplied candidates (duplicates scored once), all of them unless ``k``."""
        unique = list(dict.fromkeys(candidates))
        return self._rank(user_id, video_id, device, unique, lambda _i: (CALLER, [CALLER]),
                          k or len(unique), when, details)

    def _rank(self, user_id: str | None, video_id: str | None, device: str | None,
              ids: list[str], origin: Callable[[int], tuple[str, list[str]]], k: int,
              when: dt.datetime | None, details: bool) -> Ranking:
        """Encode, run the serving graph, keep the top ``k`` by score (stable on ties)."""
        start = time.perf_counter()
        when = when or dt.datetime.now(dt.UTC)
        known_video = self.store.knows_item(video_id)
        if not ids:
            return Ranking([], self.version, self.store.knows_user(user_id), known_video, 0,
                           {"ranking": 0.0})
        enc = self.store.encode(user_id, ids, device, when)
        preds, scores = self.backend.run(enc.categorical, enc.dense, enc.multi, enc.device)
        top = np.argsort(-scores, kind="stable")[:k]
        items = []
        for i in top.tolist():
            source, sources = origin(i)
            items.append(RankedItem(ids[i], float(scores[i]),
                                    dict(zip(self.task_names, preds[i].tolist(), strict=True)),
                                    source, sources, bool(enc.known_items[i]),
                                    self.store.item_details(ids[i]) if details else None))
        return Ranking(items, self.version, enc.known_user, known_video, len(ids),
                       {"ranking": (time.perf_counter() - start) * 1e3})


def _choose_backend(directory: Path, manifest: dict[str, Any], graph: ServingGraph,
                    store: FeatureStore, choice: BackendChoice, threads: int
                    ) -> tuple[Backend, dict[str, Any]]:
    """Torch, ONNX, or (``auto``) whichever is faster on 500 real rows, parity re-checked."""
    torch_backend = TorchBackend(graph)
    onnx_path = directory / ONNX_FILE
    exported = manifest.get("onnx", {}).get("exported", False) and onnx_path.is_file()
    if choice == "torch" or (choice == "auto" and not exported):
        reason = "requested" if choice == "torch" else manifest.get("onnx", {}).get(
            "reason", "no ONNX export")
        return torch_backend, {"chosen": "torch", "reason": reason}
    if not exported:
        raise ModelDirError(f"{directory}: ONNX backend requested but the model has no ONNX "
                            f"export ({manifest.get('onnx', {}).get('reason', 'unknown reason')})")
    try:
        onnx_backend = OnnxBackend(onnx_path, threads)
        probe = parity_inputs(store, 500)
        diff = max_score_difference(torch_backend, onnx_backend, probe)
    except Exception as exc:  # a broken ONNX file must refuse the model, whatever ORT raises
        raise ModelDirError(f"{onnx_path}: cannot run the ONNX graph ({exc})") from exc
    if not diff <= PARITY_TOLERANCE:
        raise ModelDirError(f"{onnx_path}: ONNX and PyTorch scores differ by {diff:.3g} "
                            f"(> {PARITY_TOLERANCE})")
    report = {"parity_max_abs_diff": diff}
    if choice == "onnx":
        return onnx_backend, {"chosen": "onnx", "reason": "requested", **report}
    timings = {b.name: median_seconds(b, probe) * 1e3 for b in (torch_backend, onnx_backend)}
    faster = min((onnx_backend, torch_backend), key=lambda b: timings[b.name])
    return faster, {"chosen": faster.name, "reason": "faster on 500 rows",
                    "median_ms": timings, **report}


def _without_paths(report: dict[str, Any]) -> dict[str, Any]:
    return {k: ABSOLUTE_PATH.sub(r"\1", v) if isinstance(v, str) else v for k, v in report.items()}

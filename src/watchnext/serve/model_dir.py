"""A servable model directory: the ranker checkpoint plus everything serving needs beside it.

    MODEL_DIR/
      config.json, encoder.json, model.safetensors, state.json   the ranker's checkpoint
      retrieval/       pool.json + one folder per candidate source (JSON + .npy)
      features/        store.json + users.parquet + items.parquet (latest values per entity)
      serving.onnx     the serving graph (absent if export failed; the reason is in service.json)
      service.json     format, version, columns, ONNX parity, and a SHA-256 of every file above

The folder is built under a temporary name and renamed into place when complete, and loading
verifies every checksum, so a half-written or corrupted model directory is refused, never served.
Building one needs a trained model (a checkpoint): training is not serving's job
(``watchnext.workflows.build_service`` trains, then calls ``build_model_dir``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from watchnext.artifacts.checkpoint import CheckpointError
from watchnext.config import RunConfig
from watchnext.model.load import LoadedModel, load_model
from watchnext.retrieve.log import LogColumns
from watchnext.retrieve.pool import default_pool
from watchnext.serve.backends import (
    PARITY_TOLERANCE,
    ExportGraph,
    OnnxBackend,
    ServingGraph,
    TorchBackend,
    example_inputs,
    export_onnx,
    max_score_difference,
)
from watchnext.serve.features import FeatureStore

MANIFEST = "service.json"
FORMAT = 1
ONNX_FILE = "serving.onnx"


class ModelDirError(RuntimeError):
    """A model directory is missing, incomplete, corrupt or inconsistent."""


def default_columns(config: RunConfig, table: pa.Table, item_column: str = "video_id") -> LogColumns:
    """Log columns for retrieval: the config's user column, the item column, and as "watched"
    the first binary engagement task whose label is a plain column (e.g. ``is_click``)."""
    watched = next((t.label for t in config.tasks if t.type == "binary"
                    and t.group == "engagement" and t.label in table.column_names), "")
    return LogColumns(user=config.data.user_column or "user_id", item=item_column,
                      watched=watched)


def refuse_existing(out_dir: str | Path, overwrite: bool) -> Path:
    """``out_dir`` as a Path, or ``ModelDirError`` if it exists and may not be replaced."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ModelDirError(f"{out_dir}: already exists (pass overwrite=True to replace it)")
    return out_dir


def build_model_dir(model: LoadedModel | str | Path, logs: pa.Table, out_dir: str | Path, *,
                    item_column: str = "video_id", columns: LogColumns | None = None,
                    max_candidates: int = 300, topic_column: str = "topic",
                    roles: dict[str, str] | None = None, onnx: bool = True,
                    overwrite: bool = False, log: Callable[[str], None] = lambda _m: None) -> Path:
    """Write a servable model directory at ``out_dir`` from a trained model (a checkpoint folder,
    or a ``LoadedModel``) and ``logs``, which retrieval and the feature store learn from: pass the
    freshest logs available at build time (e.g. the training and validation days together).
    """
    out_dir = refuse_existing(out_dir, overwrite)
    if not isinstance(model, LoadedModel):
        model = load_ranker(model)
    columns = columns or default_columns(model.config, logs, item_column)
    tmp = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    log("fitting candidate sources")
    pool = default_pool(logs, columns, max_candidates, topic_column)
    for kind, why in pool.skipped.items():
        log(f"warning: the pool has no {kind} source: {why}")
    log("fitted in " + ", ".join(f"{name} {s:.1f} s" for name, s in pool.fit_seconds.items()))
    pool.save(tmp / "retrieval")
    log("building the feature store")
    store = FeatureStore.build(logs, model.encoder, columns, roles)
    store.save(tmp / "features")
    onnx_info = _export(model, store, tmp / ONNX_FILE) if onnx else {"exported": False,
                                                                     "reason": "disabled"}
    manifest = {"format": FORMAT, "created": dt.datetime.now(dt.UTC).isoformat(),
                "columns": vars(columns), "onnx": onnx_info,
                "retrieval": pool.describe(), "feature_roles": store.feature_roles,
                "sha256": _checksums(tmp)}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out_dir)
    log(f"model directory written: {out_dir}")
    return out_dir


def _export(model: LoadedModel, store: FeatureStore, path: Path) -> dict[str, Any]:
    """Export to ONNX and check parity on real rows; a failure is recorded, not fatal."""
    reference = ServingGraph(model.model, model.config.tasks)
    graph = ExportGraph(model.model, model.config.tasks)
    probe = parity_inputs(store)
    try:
        export_onnx(graph, example_inputs(graph, 2, probe[0].shape[1], probe[1].shape[1],
                                          probe[2].shape[1:]), path)
        diff = max_score_difference(TorchBackend(reference), OnnxBackend(path), probe)
    except Exception as exc:  # whatever the exporter raises, the model serves with torch
        path.unlink(missing_ok=True)
        return {"exported": False, "reason": f"{type(exc).__name__}: {exc}"}
    if not diff <= PARITY_TOLERANCE:
        path.unlink(missing_ok=True)
        return {"exported": False, "reason": f"ONNX scores differ from PyTorch by {diff:.3g}",
                "parity_max_abs_diff": diff}
    return {"exported": True, "parity_max_abs_diff": diff, "parity_rows": len(probe[0])}


def parity_inputs(store: FeatureStore, n: int = 512) -> tuple[np.ndarray, ...]:
    """Real encoded rows: the first users paired with many items, at a fixed time."""
    when = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    users = list(store.user_index)[:4] or [None]
    items = store.item_ids[:max(1, n // len(users))]
    parts = [store.encode(u, items, None, when) for u in users]
    return (np.concatenate([p.categorical for p in parts]), np.concatenate([p.dense for p in parts]),
            np.concatenate([p.multi for p in parts]), np.concatenate([p.device for p in parts]))


def _checksums(directory: Path) -> dict[str, str]:
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name != MANIFEST:
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read ``service.json`` and verify every listed file's checksum."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelDirError(f"{directory}: no such model directory")
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise ModelDirError(f"{directory}: not a servable model directory ({MANIFEST} missing; "
                            "build one with build_model_dir or `watchnext build-service`)") from exc
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{directory}/{MANIFEST}: corrupt ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelDirError(f"{directory}/{MANIFEST}: unsupported format "
                            f"{manifest.get('format') if isinstance(manifest, dict) else None!r}")
    for name, digest in manifest.get("sha256", {}).items():
        path = directory / name
        if not path.is_file():
            raise ModelDirError(f"{path}: missing from the model directory")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ModelDirError(f"{path}: checksum mismatch, the file is corrupt or partial")
    return manifest


def load_ranker(directory: str | Path) -> LoadedModel:
    """The ranker of a model directory (or any checkpoint folder); a bad one is a ModelDirError."""
    try:
        return load_model(directory)
    except CheckpointError as exc:
        raise ModelDirError(str(exc)) from exc

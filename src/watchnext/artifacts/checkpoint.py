"""Checkpoints: safetensors weights + JSON config, vocabularies and state; no pickle anywhere.

There is no RNG file: training reseeds every step from its coordinates (train/step.py), so the
data cursor in ``state.json`` is all the random state a resumed run needs.

A checkpoint is a folder, built under a temporary name and renamed into place only when every
file is written and fsynced, so a crash never leaves a half checkpoint under a real name.
``state.json`` records a SHA-256 of every other file; loading verifies them, so a corrupt or
truncated checkpoint is refused with a clear error.

``model.safetensors`` is always the model to serve, evaluate and inspect. When training keeps a
weight average (``train.weight_averaging``) that is the average, and the weights the optimiser
continues from are stored beside it as ``trained.safetensors``; without averaging the two are
the same and only ``model.safetensors`` is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from watchnext.artifacts.atomic import fsync_path, write_bytes_atomic, write_text_atomic
from watchnext.config import RunConfig, config_from_dict

LATEST = "LATEST"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt."""


Tensors = Mapping[str, torch.Tensor]


def save_checkpoint(directory: str | Path, *, config: RunConfig, encoder_state: dict[str, Any],
                    model: torch.nn.Module | Tensors, state: dict[str, Any],
                    optimizer: torch.optim.Optimizer | Tensors | None = None,
                    trained: Tensors | None = None) -> Path:
    """Write a checkpoint folder atomically; an existing folder of that name is replaced.
    ``model`` and ``optimizer`` may be given as their tensors already (``optimizer_tensors``'
    names): sharded training assembles them from several processes. ``trained``: the weights
    training continues from, when ``model`` is their average (see the module doc)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = model.state_dict() if isinstance(model, torch.nn.Module) else model
    files = {
        "config.json": json.dumps(config.to_dict(), indent=2).encode(),
        "encoder.json": json.dumps(encoder_state).encode(),
        "model.safetensors": _tensor_file(weights),
    }
    if optimizer is not None:
        tensors = optimizer if isinstance(optimizer, Mapping) else optimizer_tensors(optimizer)
        files["optimizer.safetensors"] = st_save(dict(tensors))
    if trained is not None:
        files["trained.safetensors"] = _tensor_file(trained)
    state = {**state, "sha256": {name: hashlib.sha256(data).hexdigest()
                                 for name, data in files.items()}}
    files["state.json"] = json.dumps(state, indent=2).encode()
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        fsync_path(tmp / name)
    fsync_path(tmp)
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old)
    else:
        os.replace(tmp, directory)
    fsync_path(directory.parent)
    return directory


def mark_latest(run_dir: str | Path, checkpoint: str | Path) -> None:
    """Point ``run_dir/LATEST`` at a checkpoint folder, given relative to ``run_dir`` (atomic)."""
    write_text_atomic(Path(run_dir) / LATEST, Path(checkpoint).as_posix() + "\n")


def resolve(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder whose LATEST names one."""
    path = Path(path)
    if (path / LATEST).exists():
        return path / (path / LATEST).read_text().strip()
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Verify and read a checkpoint: config, encoder state, weights, state, and where written,
    the optimizer's tensors and the trained weights (``trained``: see the module doc)."""
    path = resolve(path)
    if not (path / "state.json").exists():
        raise CheckpointError(f"{path}: not a checkpoint (state.json missing)")
    try:
        state = json.loads((path / "state.json").read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}/state.json: corrupt ({exc})") from exc
    blobs = {}
    for name, digest in state.get("sha256", {}).items():
        file = path / name
        if not file.exists():
            raise CheckpointError(f"{file}: missing from checkpoint")
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise CheckpointError(f"{file}: checksum mismatch, the file is corrupt or partial")
        blobs[name] = data
    if "model.safetensors" not in blobs:
        raise CheckpointError(f"{path}: checkpoint lists no model weights")
    try:
        out = {
            "path": path,
            "config": config_from_dict(json.loads(blobs["config.json"])),
            "encoder": json.loads(blobs["encoder.json"]),
            "weights": st_load(blobs["model.safetensors"]),
            "state": state,
        }
        if "optimizer.safetensors" in blobs:
            out["optimizer"] = st_load(blobs["optimizer.safetensors"])
        if "trained.safetensors" in blobs:
            out["trained"] = st_load(blobs["trained.safetensors"])
    except (SafetensorError, json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc
    return out


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Flatten an optimizer's state into named tensors (safetensors holds tensors only)."""
    sd = optimizer.state_dict()
    out = {}
    for param_id, pstate in sd["state"].items():
        for key, value in pstate.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"state.{param_id}.{key}"] = tensor.detach().cpu().clone().contiguous()
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer,
                           tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of ``optimizer_tensors``; param groups come from the live optimizer."""
    sd = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = tensor
    optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


def _tensor_file(tensors: Tensors) -> bytes:
    return st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def write_json(path: str | Path, payload: Any) -> None:
    write_bytes_atomic(path, json.dumps(payload, indent=2).encode())

"""The run's one checkpoint scheme: ``checkpoints/step-N`` + ``LATEST``, last K kept, verified.

Checkpoints are written atomically (``checkpoint.save_checkpoint``), so a killed writer leaves only
a hidden temporary folder; but disks still flip bits and people still copy half a folder. Every
checkpoint is verified against its SHA-256 list on load; one that fails is refused with the
reason logged, and the next older one is tried, so one bad checkpoint costs at most
``checkpoint_every`` steps of work instead of the run. ``check_resume`` and ``check_data_order``
are the one resume check: what a resumed run may not change.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import ConfigError, RunConfig

CHECKPOINTS = "checkpoints"
_STEP = re.compile(r"^step-(\d+)$")
SAME_SECTIONS = ("features", "tasks", "bias", "model")
SAME_TRAIN_KEYS = ("learning_rate", "weight_decay", "batch_size", "seed", "sparse_embeddings",
                   "precision", "embeddings", "sharded_learning_rate", "weight_averaging")


def check_resume(saved: RunConfig, given: RunConfig) -> None:
    """A resumed run must train the model it started: same features, tasks, bias, model, and the
    training keys that change what a step computes or what a checkpoint holds (a checkpoint
    written without weight averaging has no average to continue, so it resumes only without)."""
    a, b = saved.to_dict(), given.to_dict()
    for section in SAME_SECTIONS:
        if a[section] != b[section]:
            raise ConfigError(f"{section}: differs from the checkpoint's config; resume with the "
                              "config the run started with")
    for key in SAME_TRAIN_KEYS:
        if a["train"][key] != b["train"][key]:
            raise ConfigError(f"train.{key}: the checkpoint used {a['train'][key]!r}, the config "
                              f"says {b['train'][key]!r}")


def check_data_order(saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Options that fix the row order (``None``: not given) must match the checkpoint's."""
    for key, value in wanted.items():
        if value is not None and value != saved[key]:
            raise ConfigError(f"{key}: the checkpoint was trained with {saved[key]!r}, not "
                              f"{value!r}; a resumed run keeps the data order it started with")


def save(run_dir: str | Path, step: int, keep: int, **checkpoint: Any) -> Path:
    """Write checkpoint ``step-N`` (``save_checkpoint``'s arguments), point LATEST at it, and
    delete all but the newest ``keep``."""
    path = step_dir(run_dir, step)
    ckpt.save_checkpoint(path, **checkpoint)
    ckpt.mark_latest(run_dir, Path(CHECKPOINTS) / path.name)
    prune(run_dir, keep)
    return path


def step_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:010d}"


def run_folder(checkpoint: str | Path) -> Path | None:
    """The run folder of a step checkpoint (``RUN`` for ``RUN/checkpoints/step-N``), where the
    run's ``metrics.json`` is; None for any other folder (a ``train`` command's model, say)."""
    path = Path(checkpoint)
    if _STEP.match(path.name) and path.parent.name == CHECKPOINTS:
        return path.parent.parent
    return None


def step_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every step checkpoint, newest first (hidden temporaries ignored)."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name))]
    return sorted(found, reverse=True)


def newest_valid(run_dir: str | Path, log: Callable[[str], None]
                 ) -> tuple[dict[str, Any] | None, list[Path]]:
    """The newest checkpoint that verifies (None when the run has none) and the refused ones.

    Raises ``CheckpointError`` listing every refusal when checkpoints exist but none verifies.
    """
    refused: list[Path] = []
    reasons: list[str] = []
    for _, path in step_checkpoints(run_dir):
        try:
            return ckpt.read_checkpoint(path), refused
        except ckpt.CheckpointError as exc:
            refused.append(path)
            reasons.append(str(exc))
            log(f"refusing checkpoint {path.name}: {exc}; trying the previous one")
    if refused:
        raise ckpt.CheckpointError(f"{run_dir}: no checkpoint verifies:\n  " + "\n  ".join(reasons))
    return None, []


def set_aside(paths: list[Path]) -> None:
    """Rename refused checkpoints to ``refused-step-N``: kept for inspection, never resumed."""
    for path in paths:
        target = path.with_name(f"refused-{path.name}")
        shutil.rmtree(target, ignore_errors=True)
        path.rename(target)


def prune(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints, and temporaries a crash left behind."""
    for _, path in step_checkpoints(run_dir)[keep:]:
        shutil.rmtree(path, ignore_errors=True)


def remove_leftovers(run_dir: str | Path) -> None:
    """Hidden ``.step-*.tmp-PID`` / ``.old-PID`` folders of a writer that was killed."""
    folder = Path(run_dir) / CHECKPOINTS
    if folder.is_dir():
        for path in folder.glob(".step-*"):
            shutil.rmtree(path, ignore_errors=True)

"""The training loop: Adam over columnar minibatches, early stopping, sequential day-by-day runs.

Every random draw is seeded: shuffling uses a generator seeded from (seed, chunk, epoch), and the
global RNG (dropouts) is saved in each checkpoint, so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import RunConfig
from watchnext.data.batch import Batch, iterate
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.adversarial import position_loss
from watchnext.model.ranker import MultitaskRanker
from watchnext.train.losses import early_stopping_loss, per_task_losses, weighted_total
from watchnext.train.optim import make_optimizer
from watchnext.train.rowwise import RowWiseAdam
from watchnext.train.speed import apply_process_settings, autocast

Log = Callable[[str], None]


@dataclass
class History:
    """Per-epoch losses; ``best_epoch`` is the one whose weights were kept."""

    train: list[dict[str, float]] = field(default_factory=list)
    valid: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1


class Trainer:
    def __init__(self, config: RunConfig, encoder: FeatureEncoder, model: MultitaskRanker,
                 log: Log | None = None):
        self.config, self.encoder, self.model = config, encoder, model
        self.log = log or (lambda _msg: None)
        t = config.train
        # sparse id tables: row-wise Adam, a step touches only the id rows in the batch
        self.optimizer = make_optimizer(model, config, RowWiseAdam)
        self.loss_weights = torch.tensor([task.loss_weight for task in config.tasks])
        self._forward = torch.compile(model) if t.compile else model  # training forward only
        self.step = 0
        self.chunk = 0
        apply_process_settings(t)

    def fit(self, train: Batch, valid: Batch | None = None, chunk: int = 0) -> History:
        """Train for up to ``max_epochs``; with ``valid``, stop early and keep the best epoch."""
        t, history = self.config.train, History()
        best_loss, best_state, waited = math.inf, None, 0
        for epoch in range(t.max_epochs):
            history.train.append(self.train_epoch(train, chunk, epoch))
            if valid is None:
                history.best_epoch = epoch
                continue
            history.valid.append(self.evaluate_losses(valid))
            total = early_stopping_loss(history.valid[-1], self.config)
            self.log(f"epoch {epoch + 1}: train {history.train[-1]['total']:.4f} "
                     f"valid {total:.4f} ({t.early_stopping})")
            if total < best_loss - 1e-5:
                best_loss, waited, history.best_epoch = total, 0, epoch
                best_state = self._snapshot()
            else:
                waited += 1
                if waited > t.patience:
                    break
        if best_state is not None:
            self._restore(best_state)
        return history

    def train_epoch(self, train: Batch, chunk: int, epoch: int) -> dict[str, float]:
        self.model.train()
        generator = torch.Generator().manual_seed(
            self.config.train.seed * 1_000_003 + chunk * 1009 + epoch)
        sums, batches = torch.zeros(len(self.config.tasks)), 0
        with self._progress(len(train), f"chunk {chunk} epoch {epoch + 1}") as advance:
            for mb in iterate(train, self.config.train.batch_size, True, generator):
                losses = self.train_step(mb)
                sums += losses
                batches += 1
                advance(len(mb), float(weighted_total(losses, self.loss_weights)))
        return self._named(sums / max(batches, 1))

    def train_step(self, mb: Batch) -> torch.Tensor:
        with autocast(self.config.train.precision):
            out = self._forward(mb)
        losses = per_task_losses(out.logits.float(), mb.labels, self.model.is_binary)
        total = weighted_total(losses, self.loss_weights) + self.model.penalty()
        if out.position_logits is not None:
            total = total + position_loss(out.position_logits.float(), mb.position)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step += 1
        return losses.detach()

    @torch.inference_mode()
    def evaluate_losses(self, batch: Batch) -> dict[str, float]:
        """Validation losses with the positions as logged (the bias is part of what is fitted)."""
        self.model.eval()
        sums = torch.zeros(len(self.config.tasks))
        counts = torch.zeros(len(self.config.tasks))
        for mb in iterate(batch, 8192):
            present = (~torch.isnan(mb.labels)).sum(0)
            sums += per_task_losses(self.model(mb).logits, mb.labels, self.model.is_binary) * present
            counts += present
        return self._named(sums / counts.clamp_min(1))

    def fit_sequential(self, chunks: Sequence[tuple[str, Batch]], run_dir: str | Path,
                       valid: Batch | None = None, resume: bool = False) -> list[History]:
        """Train on time-ordered chunks (days), each warm-started from the previous checkpoint.

        After every chunk a checkpoint is written and marked LATEST; ``resume`` continues after
        the last completed chunk with its weights, optimizer and RNG state.
        """
        run_dir = Path(run_dir)
        start = self.resume(run_dir) if resume and (run_dir / ckpt.LATEST).exists() else 0
        histories = []
        for index in range(start, len(chunks)):
            name, batch = chunks[index]
            self.log(f"chunk {index + 1}/{len(chunks)} ({name}): {len(batch)} rows")
            histories.append(self.fit(batch, valid, chunk=index))
            self.chunk = index + 1
            path = self.save(run_dir / "checkpoints" / f"chunk-{index:04d}", chunk_name=name)
            ckpt.mark_latest(run_dir, Path("checkpoints") / path.name)
        return histories

    def resume(self, run_dir: str | Path) -> int:
        """Load the latest checkpoint's weights, optimizer and RNG; return the next chunk index."""
        saved = ckpt.read_checkpoint(run_dir)
        self.model.load_state_dict(saved["weights"])
        if "optimizer" in saved:
            ckpt.load_optimizer_tensors(self.optimizer, saved["optimizer"])
            torch.set_rng_state(saved["rng"]["torch"])
        self.step, self.chunk = saved["state"]["step"], saved["state"]["chunk"]
        self.log(f"resumed from {saved['path']} at step {self.step}, chunk {self.chunk}")
        return self.chunk

    def save(self, directory: str | Path, **extra: Any) -> Path:
        state = {"step": self.step, "chunk": self.chunk, **extra}
        return ckpt.save_checkpoint(directory, config=self.config,
                                    encoder_state=self.encoder.state_dict(), model=self.model,
                                    state=state, optimizer=self.optimizer)

    def _snapshot(self) -> dict[str, Any]:
        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def _restore(self, snapshot: dict[str, Any]) -> None:
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])

    def _named(self, losses: torch.Tensor) -> dict[str, float]:
        named = {t.name: float(v) for t, v in zip(self.config.tasks, losses, strict=True)}
        named["total"] = float(weighted_total(losses, self.loss_weights))
        return named

    def _progress(self, total: int, label: str):
        return _LossProgress(total, label, enabled=self.config.train.progress)


class _LossProgress:
    """A Rich progress bar showing the running loss; a no-op when progress is off."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.total, self.label, self.enabled = total, label, enabled
        self.progress: Progress | None = None

    def __enter__(self) -> Callable[[int, float], None]:
        if not self.enabled:
            return lambda _n, _loss: None
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                                 transient=True)
        self.progress.start()
        task = self.progress.add_task(self.label, total=self.total, loss=float("nan"))
        return lambda n, loss: self.progress.update(task, advance=n, loss=loss)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

"""Streamed, data-parallel, crash-safe training over day partitions: the paper's daily regime.

    days = discover(DATA)                     footers only: file-level problems stop the run here
    scan(days)                                every row validated; vocabularies and stats fitted
    for day in days (in date order):          sequential training, warm from the previous day
        for step in day:                      every shard gives b rows; processes all-reduce
            train; every N steps: checkpoint  weights, optimiser, data cursor (rank 0 writes)
        checkpoint; metrics.json

Crash safety comes from determinism rather than from saving RNG streams: every random draw of a
step (the window permutation, dropout, gate and position dropout) is seeded from
(seed, day, epoch, step, shard), and the checkpoint stores the step to run next. A run killed at
any moment and resumed from its newest verifying checkpoint therefore repeats exactly the steps an
uninterrupted run makes, and ends with the same weights.

Exactness across process counts: a step's loss is the mean over the global batch, computed as
each part's per-task sum divided by the global per-task label count (one small all-reduce), so
K shards on 1 process or on K processes produce the same gradients up to float summation order.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import ConfigError, RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.errors import DataError
from watchnext.data.io import read_tables
from watchnext.data.partitions import DayPartition, discover_days
from watchnext.data.rowcheck import REASONS, check_rows
from watchnext.data.scan import build_encoder, gathered, scan
from watchnext.data.streaming import ShardCursor, StepPart, StreamLayout, prefetch, shard_steps
from watchnext.model.cost import multiplications
from watchnext.model.ranker import MultitaskRanker
from watchnext.train import recovery
from watchnext.train.distributed import Distributed
from watchnext.train.losses import per_task_losses, weighted_total
from watchnext.train.optim import CombinedOptimizer, make_optimizer
from watchnext.train.speed import apply_process_settings

Log = Callable[[str], None]
METRICS = "metrics.json"
_REASON_KEYS = tuple(REASONS)


@dataclass(frozen=True)
class StreamOptions:
    """How to stream. ``None`` means: the checkpoint's value on resume, the default otherwise."""

    resume: bool = False
    skip_bad_rows: bool = False
    checkpoint_every: int = 1000
    keep: int = 3
    shards: int | None = None  # default: the number of processes
    shuffle_buffer: int | None = None  # rows per shard window; default 100_000
    epochs_per_day: int | None = None  # default 1: the paper's one pass over each new day
    sparse: bool | None = None  # sparse embedding gradients (SparseAdam); default train.sparse_embeddings
    valid: str | None = None  # a small in-memory validation set, evaluated after each day
    read_rows: int = 65_536
    prefetch: int = 2

    def check(self) -> None:
        for name in ("checkpoint_every", "keep", "read_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("shards", "shuffle_buffer", "epochs_per_day"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}: must be >= 1, got {value}")
        if self.prefetch < 0:
            raise ConfigError(f"prefetch: must be >= 0, got {self.prefetch}")


DEFAULTS = {"shuffle_buffer": 100_000, "epochs_per_day": 1, "sparse": False}


@dataclass
class _Day:
    """Running totals of the day being trained: per-task loss shares, rows, skipped rows."""

    day: DayPartition
    acc: torch.Tensor
    before: float = 0.0  # seconds spent on this day before a resume
    cpu_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)
    steps_run: int = 0

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started

    def cpu_seconds(self) -> float:
        """CPU time of this process (all threads, prefetch included): robust on a shared machine."""
        return self.cpu_before + time.process_time() - self.cpu_started

    def partial(self, acc: list[float]) -> dict[str, Any]:
        return {"acc": acc, "seconds": self.seconds(), "cpu_seconds": self.cpu_seconds()}


@dataclass
class StreamResult:
    run_dir: Path
    checkpoint: Path | None
    global_step: int
    metrics: dict[str, Any] = field(default_factory=dict)


def train_stream(config: RunConfig, data: str | Path, run_dir: str | Path,
                 options: StreamOptions | None = None, log: Log | None = None) -> StreamResult:
    """Train on the ``day=YYYY-MM-DD/`` Parquet partitions under ``data``; see the module doc.

    Run it plainly for one process or under ``torchrun`` for several. Raises ``DataError`` for bad
    data (unless ``skip_bad_rows``) before anything is written, ``CheckpointError`` when resuming
    finds no checkpoint that verifies, ``ConfigError`` when options contradict the checkpoint.
    """
    options = options or StreamOptions()
    options.check()
    group = Distributed.from_env()
    try:
        return _StreamRun(config, Path(data), Path(run_dir), options, group, log).run()
    finally:
        group.close()


class _StreamRun:
    def __init__(self, config: RunConfig, data: Path, run_dir: Path, options: StreamOptions,
                 group: Distributed, log: Log | None):
        self.config, self.data, self.run_dir, self.options, self.group = \
            config, data, run_dir, options, group
        self.log = (log or _quiet) if group.is_main else _quiet  # only rank 0 speaks
        self.weights = torch.tensor([t.loss_weight for t in config.tasks], device=group.device)

    def run(self) -> StreamResult:
        cfg, opts, group = self.config, self.options, self.group
        apply_process_settings(cfg.train)
        days, bad_files = discover_days(self.data, cfg, opts.skip_bad_rows)
        saved, refused = self._find_checkpoint()
        state = saved["state"] if saved else {}
        self.stream = self._stream_settings(state.get("stream", {}))
        layout = StreamLayout.build(cfg.train.batch_size, self.stream["shards"],
                                    self.stream["shuffle_buffer"], opts.read_rows)
        if layout.shards % group.world:
            raise ConfigError(f"shards: {layout.shards} shards cannot be split evenly over "
                              f"{group.world} processes")
        local = [s for s in range(layout.shards) if s % group.world == group.rank]
        done = state.get("days_done", [])
        todo = [d for d in days if d.name not in set(done)]
        cursor = state.get("cursor", {"day": None, "epoch": 0, "step": 0, "fingerprint": ""})
        self._check_cursor(cursor, todo)

        found = gathered(scan(cfg, todo, layout, local, opts.skip_bad_rows, fit=saved is None),
                         group.all_gather_bytes if group.active else None)
        found.raise_error()
        todo_names = {d.name for d in todo}
        bad_files = [b for b in bad_files if b.day in todo_names]
        for b in bad_files:
            found.skipped[b.reason] += b.rows or 0
        self.bad_files = bad_files
        skipped_files = [asdict(b) for b in bad_files]
        self._log_skipped(found.skipped, skipped_files)
        encoder = FeatureEncoder.from_state(cfg, saved["encoder"]) if saved else \
            build_encoder(cfg, found)
        valid = self._valid_batch(encoder)

        torch.manual_seed(cfg.train.seed)
        model = MultitaskRanker(cfg, encoder, sparse=self.stream["sparse"])
        if saved:
            model.load_state_dict(saved["weights"])
        model.to(group.device)
        optimizer = make_optimizer(model, cfg)  # SparseAdam on the tables when stream["sparse"]
        if saved and "optimizer" in saved:
            ckpt.load_optimizer_tensors(optimizer, saved["optimizer"])
        self.model, self.encoder, self.optimizer, self.layout = model, encoder, optimizer, layout
        self.net, self.local = group.wrap(model), local

        if group.is_main:  # the first write of the run: everything above has passed
            self.run_dir.mkdir(parents=True, exist_ok=True)
            recovery.remove_leftovers(self.run_dir)
            recovery.set_aside(refused)
            if saved and refused:
                ckpt.mark_latest(self.run_dir, Path(recovery.CHECKPOINTS) / saved["path"].name)
        cost = multiplications(model)
        self.log(f"{cfg.model.kind}: {cost['serving']:,} multiplications per example; "
                 f"{group.world} process(es), {layout.shards} shard(s) of {layout.part_rows} rows "
                 f"per step, shuffle window {layout.window_rows:,} rows")
        self.progress = {
            "global_step": state.get("global_step", 0), "days_done": list(done), "cursor": cursor,
            "days": state.get("days", []), "partial": state.get("partial"),
            "skipped_found": _merge_counts(state.get("skipped_found", {}), found.skipped),
            "skipped_files": state.get("skipped_files", []) + skipped_files,
        }
        last = self._train(todo, valid) or (saved["path"] if saved else None)
        self._write_metrics()
        group.barrier()  # every process returns once rank 0's last checkpoint is in place
        return StreamResult(self.run_dir, last, self.progress["global_step"], self._metrics())

    def _find_checkpoint(self) -> tuple[dict[str, Any] | None, list[Path]]:
        if not self.options.resume:
            if recovery.step_checkpoints(self.run_dir):
                raise ckpt.CheckpointError(f"{self.run_dir} already holds checkpoints: pass --resume "
                                           "to continue that run, or choose a new folder")
            return None, []
        saved, refused = recovery.newest_valid(self.run_dir, self.log)
        step = saved["state"]["global_step"] if saved else -1
        self.group.agree(step, "the checkpoint to resume from")
        if saved is None:
            self.log(f"no checkpoint in {self.run_dir}: starting from scratch")
        else:
            _same_model(saved["config"], self.config)
            self.log(f"resuming from {saved['path'].name} (step {step})")
        return saved, refused

    def _stream_settings(self, saved: dict[str, Any]) -> dict[str, Any]:
        """Settings that fix the data order; a resumed run must keep the checkpoint's."""
        wanted = {"shards": self.options.shards, "shuffle_buffer": self.options.shuffle_buffer,
                  "epochs_per_day": self.options.epochs_per_day, "sparse": self.options.sparse}
        fixed = {"batch_size": self.config.train.batch_size, "seed": self.config.train.seed}
        if not saved:
            defaults = {**DEFAULTS, "sparse": self.config.train.sparse_embeddings}
            out = {k: (v if v is not None else defaults.get(k)) for k, v in wanted.items()}
            out["shards"] = out["shards"] or self.group.world
            return {**out, **fixed}
        for key, value in {**wanted, **fixed}.items():
            if value is not None and value != saved[key]:
                raise ConfigError(f"{key}: the checkpoint was trained with {saved[key]!r}, not "
                                  f"{value!r}; a resumed run keeps the data order it started with")
        return dict(saved)

    def _check_cursor(self, cursor: dict[str, Any], todo: list[DayPartition]) -> None:
        if cursor["day"] is None:
            return
        if not todo or todo[0].name != cursor["day"]:
            raise DataError(f"the checkpoint stopped inside day {cursor['day']}, which is not the "
                            "first unfinished day in the data", file=str(self.data))
        if todo[0].fingerprint() != cursor["fingerprint"]:
            raise DataError(f"day {cursor['day']} changed since the checkpoint (files added, removed "
                            "or resized); resume needs the same data", file=str(self.data))

    def _valid_batch(self, encoder: FeatureEncoder) -> Batch | None:
        if not self.options.valid or not self.group.is_main:
            return None
        table = read_tables(self.options.valid)
        check = check_rows(self.config, table)
        if check.first is not None:
            if not self.options.skip_bad_rows:
                raise check.first
            self.log(f"validation data: skipping {check.num_bad:,} bad rows")
            table = table.filter(~check.bad)
        return encoder.transform(table)

    def _log_skipped(self, rows: Counter, files: list[dict[str, Any]]) -> None:
        for f in files:
            self.log(f"skipping file {f['path']} ({f['reason']}): {f['message']}")
        if rows:
            detail = ", ".join(f"{n:,} {reason}" for reason, n in sorted(rows.items()))
            self.log(f"skipping {sum(rows.values()):,} bad rows: {detail}")

    # --- one day ---------------------------------------------------------------------------

    def _train(self, todo: list[DayPartition], valid: Batch | None) -> Path | None:
        """The remaining days as one stream of steps: reading runs ahead across day ends."""
        p, every = self.progress, self.options.checkpoint_every
        items = self._step_parts(todo, dict(p["cursor"]))
        if self.options.prefetch:
            items = prefetch(items, self.options.prefetch)
        last, current = None, None
        for day, epoch, step, parts in items:
            if current is None:
                current = self._start_day(day)
            if parts is not None:
                self._step(parts, day, epoch, step, current.acc)
                current.steps_run += 1
                p["global_step"] += 1
                p["cursor"] = self._next_cursor(day, epoch, step, self.layout.steps(day))
            if p["cursor"]["day"] != day.name:
                last = self._finish_day(current, valid)
                current = None
            elif p["global_step"] % every == 0:
                last = self._checkpoint(current.partial(self._reduced(current.acc).tolist()))
        return last

    def _step_parts(self, todo: list[DayPartition], cursor: dict[str, Any]
                    ) -> Iterator[tuple[DayPartition, int, int, tuple[StepPart, ...] | None]]:
        """(day, epoch, step, one part per local shard) for every remaining step, in order; a day
        without steps yields one ``None`` so it is still finished and recorded."""
        for day in todo:
            steps = self.layout.steps(day)
            resumed = cursor["day"] == day.name
            epoch0, step0 = (cursor["epoch"], cursor["step"]) if resumed else (0, 0)
            if not steps:
                yield day, 0, 0, None
            for epoch in range(epoch0, self.stream["epochs_per_day"]):
                first = step0 if epoch == epoch0 else 0
                at = ShardCursor(day, day.ordinal, epoch, first)
                streams = [shard_steps(self.encoder, self.layout, s, at, self.config.train.seed,
                                       self.options.skip_bad_rows) for s in self.local]
                for step, parts in zip(range(first, steps), zip(*streams, strict=True), strict=True):
                    yield day, epoch, step, parts

    def _start_day(self, day: DayPartition) -> _Day:
        p = self.progress
        current = _Day(day, torch.zeros(len(self.config.tasks) + 1 + len(_REASON_KEYS),
                                        dtype=torch.float64))
        resumed = p["cursor"]["day"] == day.name
        if resumed and p["partial"]:
            if self.group.is_main:
                current.acc += torch.tensor(p["partial"]["acc"], dtype=torch.float64)
            current.before = p["partial"]["seconds"]
            current.cpu_before = p["partial"]["cpu_seconds"]
        epochs = self.stream["epochs_per_day"]
        where = f", resuming at epoch {p['cursor']['epoch'] + 1} step {p['cursor']['step']}" \
            if resumed else ""
        self.log(f"day {day.name}: {day.num_rows:,} rows, {self.layout.steps(day):,} steps x "
                 f"{epochs} epoch(s){where}")
        return current

    def _step(self, parts: tuple[StepPart, ...], day: DayPartition, epoch: int, step: int,
              acc: torch.Tensor) -> None:
        group, n_tasks = self.group, len(self.config.tasks)
        batches = [_to_device(part.batch, group.device) for part in parts]
        present = [(~torch.isnan(b.labels)).sum(0).to(torch.float64) for b in batches]
        counts = group.all_reduce_sum(torch.stack(present).sum(0)).clamp_min(1)
        self.optimizer.zero_grad(set_to_none=True)
        tower = self.model.shallow_tower
        exposure = tower.exposure.clone() if tower is not None else None
        for i, (shard, batch) in enumerate(zip(self.local, batches, strict=True)):
            torch.manual_seed(_step_seed(self.config.train.seed, day.ordinal, epoch, step, shard))
            sync = i == len(batches) - 1 or not group.active
            with contextlib.nullcontext() if sync else self.net.no_sync():
                out = self.net(batch)
                losses = per_task_losses(out.logits, batch.labels, self.model.is_binary)
                share = losses * (present[i] / counts).to(losses.dtype)
                total = weighted_total(share, self.weights) * group.world
                if i == len(batches) - 1:  # once per step; DDP averages it over the ranks
                    total = total + self.model.penalty()
                total.backward()
            acc[:n_tasks] += share.detach().to("cpu", torch.float64)
            acc[n_tasks] += len(batch)
            for reason, n in parts[i].skipped.items():
                acc[n_tasks + 1 + _REASON_KEYS.index(reason)] += n
        if exposure is not None:  # every rank counts the impressions of all ranks
            tower.exposure.copy_(exposure + group.all_reduce_sum(tower.exposure - exposure))
        self.optimizer.step()

    def _next_cursor(self, day: DayPartition, epoch: int, step: int, steps: int) -> dict[str, Any]:
        epoch, step = (epoch, step + 1) if step + 1 < steps else (epoch + 1, 0)
        if epoch == self.stream["epochs_per_day"]:
            return {"day": None, "epoch": 0, "step": 0, "fingerprint": ""}
        return {"day": day.name, "epoch": epoch, "step": step, "fingerprint": day.fingerprint()}

    def _finish_day(self, current: _Day, valid: Batch | None) -> Path | None:
        day, seconds, cpu = current.day, current.seconds(), current.cpu_seconds()
        totals = self._reduced(current.acc)
        n_tasks = len(self.config.tasks)
        for b in self.bad_files:
            if b.day == day.name and b.rows:
                totals[n_tasks + 1 + _REASON_KEYS.index(b.reason)] += b.rows
        steps = self.layout.steps(day) * self.stream["epochs_per_day"]
        losses = (totals[:n_tasks] / max(steps, 1)).tolist()
        trained = int(totals[n_tasks])
        record = {
            "day": day.name, "rows": day.num_rows, "steps": steps, "rows_trained": trained,
            "rows_skipped": {k: int(v) for k, v in zip(_REASON_KEYS, totals[n_tasks + 1:].tolist(),
                                                        strict=True) if v},
            "loss": {**dict(zip(self.config.task_names, losses, strict=True)),
                     "total": float(sum(w * v for w, v in zip(self.weights.tolist(), losses,
                                                              strict=True)))},
            "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "examples_per_s": round(trained / seconds, 1) if seconds > 0 else None,
        }
        if valid is not None:
            record["valid_loss"] = self._valid_losses(valid)
        p = self.progress
        p["days"].append(record)
        p["days_done"].append(day.name)
        p["partial"] = None
        self.log(f"day {day.name} done: loss {record['loss']['total']:.4f}, "
                 f"{trained:,} rows trained" + (f", {sum(record['rows_skipped'].values()):,} skipped"
                                                if record["rows_skipped"] else "")
                 + (f", {record['examples_per_s']:,.0f} examples/s" if current.steps_run else ""))
        path = self._checkpoint(None)
        self._write_metrics()
        return path

    def _reduced(self, acc: torch.Tensor) -> torch.Tensor:
        """``acc`` summed over processes (a collective: every process calls it at the same step)."""
        return self.group.all_reduce_sum(acc.to(self.group.device, copy=True)).cpu()

    @torch.inference_mode()
    def _valid_losses(self, valid: Batch) -> dict[str, float]:
        self.model.eval()
        sums = torch.zeros(len(self.config.tasks), dtype=torch.float64)
        counts = torch.zeros_like(sums)
        for start in range(0, len(valid), 8192):
            mb = _to_device(valid.slice(start, start + 8192), self.group.device)
            present = (~torch.isnan(mb.labels)).sum(0).cpu().to(torch.float64)
            losses = per_task_losses(self.model(mb).logits, mb.labels, self.model.is_binary)
            sums += losses.cpu().to(torch.float64) * present
            counts += present
        self.model.train()
        means = (sums / counts.clamp_min(1)).tolist()
        out = dict(zip(self.config.task_names, means, strict=True))
        out["total"] = float(sum(w * v for w, v in zip(self.weights.tolist(), means, strict=True)))
        return out

    # --- checkpoints and metrics (rank 0 writes) --------------------------------------------

    def _checkpoint(self, partial: dict[str, Any] | None) -> Path | None:
        p = self.progress
        p["partial"] = partial
        if not self.group.is_main:
            return None
        state = {
            "global_step": p["global_step"], "step": p["global_step"],
            "chunk": len(p["days_done"]), "cursor": p["cursor"], "days_done": p["days_done"],
            "days": p["days"], "partial": partial, "stream": self.stream,
            "skipped_found": p["skipped_found"], "skipped_files": p["skipped_files"],
            "world_size": self.group.world,
        }
        path = recovery.step_dir(self.run_dir, p["global_step"])
        ckpt.save_checkpoint(path, config=self.config, encoder_state=self.encoder.state_dict(),
                             model=self.model, state=state, optimizer=self.optimizer)
        ckpt.mark_latest(self.run_dir, Path(recovery.CHECKPOINTS) / path.name)
        recovery.prune(self.run_dir, self.options.keep)
        self.log(f"checkpoint step {p['global_step']} -> {path}")
        return path

    def _metrics(self) -> dict[str, Any]:
        p = self.progress
        return {
            "world_size": self.group.world, "shards": self.layout.shards,
            "global_batch": self.config.train.batch_size, "global_step": p["global_step"],
            "days": p["days"],
            "skipped": {"rows_found": dict(p["skipped_found"]),
                        "rows_found_total": sum(p["skipped_found"].values()),
                        "files": p["skipped_files"]},
        }

    def _write_metrics(self) -> None:
        if self.group.is_main:
            ckpt.write_json(self.run_dir / METRICS, self._metrics())


def _same_model(saved: RunConfig, given: RunConfig) -> None:
    """A resumed run must train the model it started: same features, tasks, model and seed."""
    a, b = saved.to_dict(), given.to_dict()
    for section in ("features", "tasks", "bias", "model"):
        if a[section] != b[section]:
            raise ConfigError(f"{section}: differs from the checkpoint's config; resume with the "
                              "config the run started with")
    for key in ("learning_rate", "weight_decay", "batch_size", "seed"):
        if a["train"][key] != b["train"][key]:
            raise ConfigError(f"train.{key}: the checkpoint used {a['train'][key]!r}, the config "
                              f"says {b['train'][key]!r}")


def _quiet(_message: str) -> None:
    return None


def _merge_counts(a: dict[str, int], b: Counter) -> dict[str, int]:
    out = Counter(a)
    out.update(b)
    return dict(out)


def _step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return Batch(**{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                    for k, v in vars(batch).items()})


__all__ = ["CombinedOptimizer", "StreamOptions", "StreamResult", "train_stream"]

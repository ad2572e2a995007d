"""The one training loop: days in order, epochs, steps; checkpoints, resume and metrics.

    days = source.days()                      Parquet footers, or named tables
    prepare(days)                             every row validated; the encoder fitted
    for day in days (in order):               sequential training, warm from the previous day
        for epoch, step in day:               every shard gives b rows; processes all-reduce
            TrainStep; every N steps: checkpoint  weights, optimiser, data cursor (rank 0 writes)
        [policy: validate, stop early]        ``Ranker.fit``'s early stopping
        checkpoint; metrics.json

``Ranker.fit`` (one day, ``max_epochs`` epochs, early stopping), ``Ranker.fit_sequential`` (one
day per table), ``train-stream`` and torchrun all run here; only the source differs.

Crash safety comes from determinism rather than from saving RNG streams: every random draw of a
step (the window permutation, dropout, gate and position dropout) is seeded from
(seed, day, epoch, step, shard), and the checkpoint stores the step to run next. A run killed at
any moment and resumed from its newest verifying checkpoint therefore repeats exactly the steps an
uninterrupted run makes, and ends with the same weights. With ``train.weight_averaging`` the
checkpoint also holds the average (as the model it serves) and the trained weights, so the
resumed run ends with the same average too.
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
import pyarrow as pa
import torch

from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import ConfigError, RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.errors import DataError
from watchnext.data.rowcheck import REASONS, drop_bad_rows
from watchnext.data.streaming import Day, ShardCursor, StepPart, StreamLayout, prefetch, shard_steps
from watchnext.model.cost import multiplications
from watchnext.model.ranker import MultitaskRanker
from watchnext.train import recovery
from watchnext.train.distributed import Distributed
from watchnext.train.losses import early_stopping_loss, named_losses
from watchnext.train.policy import EarlyStopping
from watchnext.train.progress import ProgressBar
from watchnext.train.sources import Source
from watchnext.train.step import TrainStep, check_step_settings
from watchnext.train.validation import validation_losses

Log = Callable[[str], None]
METRICS = "metrics.json"
_REASON_KEYS = tuple(REASONS)
_NO_CURSOR = {"day": None, "epoch": 0, "step": 0, "fingerprint": ""}


@dataclass(frozen=True)
class LoopOptions:
    """How to walk the data. ``None`` means: the checkpoint's value on resume, the default
    otherwise (shards: the number of processes; shuffle buffer: the source's; epochs: 1)."""

    resume: bool = False
    skip_bad_rows: bool = False
    checkpoint_every: int = 1000
    keep: int = 3
    shards: int | None = None
    shuffle_buffer: int | None = None  # rows per shard window
    epochs_per_day: int | None = None
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


@dataclass
class LoopResult:
    """What a run ended with; ``checkpoint`` is None when the run had no folder. With sharded
    tables (``train.embeddings = "sharded"``) under torchrun, only rank 0's ``model`` holds the
    id tables (gathered at the end); the other processes get their table-less part."""

    model: MultitaskRanker
    encoder: FeatureEncoder
    global_step: int
    metrics: dict[str, Any]
    run_dir: Path | None = None
    checkpoint: Path | None = None


def train(config: RunConfig, source: Source, run_dir: str | Path | None = None,
          options: LoopOptions | None = None, valid: pa.Table | None = None,
          early_stopping: bool = False, log: Log | None = None) -> LoopResult:
    """Train on ``source``; see the module doc. Run it plainly or under ``torchrun``.

    Without ``run_dir`` nothing is written (no checkpoints, no resume). ``early_stopping`` (needs
    ``valid``, one process, no run folder) keeps the epoch with the best validation loss.
    Raises ``DataError`` for bad data (unless ``skip_bad_rows``) before anything is written,
    ``CheckpointError`` when resuming finds no checkpoint that verifies, ``ConfigError`` when the
    config or the options contradict the checkpoint.
    """
    options = options or LoopOptions()
    options.check()
    group = Distributed.from_env(config.train.device,
                                 group_alone=config.train.embeddings == "sharded")
    try:
        return _Run(config, source, Path(run_dir) if run_dir else None, options, group, log
                    ).run(valid, early_stopping)
    finally:
        group.close()


@dataclass
class _Day:
    """Running totals of the day being trained: loss shares, rows, skipped rows, per epoch."""

    day: Day
    acc: torch.Tensor  # [tasks..., rows, skipped by reason...] over the whole day
    epoch_acc: torch.Tensor  # [tasks...] over the current epoch
    epochs: list[dict[str, float]] = field(default_factory=list)  # finished epochs' losses
    valid: list[dict[str, float]] = field(default_factory=list)
    before: float = 0.0  # seconds spent on this day before a resume
    cpu_before: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)
    steps_run: int = 0
    steps: int = 0  # steps in one pass over the day (fixed per day; read at every step)

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started

    def cpu_seconds(self) -> float:
        """CPU time of this process (all threads, prefetch included): robust on a shared machine."""
        return self.cpu_before + time.process_time() - self.cpu_started


class _Run:
    def __init__(self, config: RunConfig, source: Source, run_dir: Path | None,
                 options: LoopOptions, group: Distributed, log: Log | None):
        self.config, self.source, self.run_dir, self.options, self.group = \
            config, source, run_dir, options, group
        self.log = (log or _quiet) if group.is_main else _quiet  # only rank 0 speaks
        self.n_tasks = len(config.tasks)

    def run(self, valid_table: pa.Table | None, early_stopping: bool) -> LoopResult:
        cfg, opts, group = self.config, self.options, self.group
        check_step_settings(cfg, group)
        if early_stopping and (valid_table is None or self.run_dir is not None or group.active):
            raise ConfigError("early stopping needs validation data, one process and no run "
                              "folder (its best epoch is kept in memory)")
        if cfg.train.embeddings == "sharded" and (early_stopping or valid_table is not None):
            raise ConfigError("train.embeddings = 'sharded': no validation during training (the "
                              "tables live on several processes); evaluate the checkpoint it "
                              "writes instead")
        days = self.source.days(cfg, opts.skip_bad_rows)
        saved, refused = self._find_checkpoint()
        state = saved["state"] if saved else {}
        self.order = self._data_order(state.get("data_order", {}))
        layout = StreamLayout.build(cfg.train.batch_size, self.order["shards"],
                                    self.order["shuffle_buffer"], opts.read_rows)
        if layout.shards % group.world:
            raise ConfigError(f"shards: {layout.shards} shards cannot be split evenly over "
                              f"{group.world} processes")
        local = [s for s in range(layout.shards) if s % group.world == group.rank]
        done = state.get("days_done", [])
        todo = [d for d in days if d.name not in set(done)]
        self.fingerprints = {d.name: d.fingerprint() for d in todo}
        cursor = state.get("cursor", dict(_NO_CURSOR))
        self._check_cursor(cursor, todo)

        prepared = self.source.prepare(cfg, todo, layout, local, opts.skip_bad_rows,
                                       saved["encoder"] if saved else None, group)
        self.bad_files = prepared.bad_files
        skipped_files = [asdict(b) for b in prepared.bad_files]
        self._log_skipped(prepared.skipped, skipped_files)
        encoder = prepared.encoder
        valid = self._valid_batch(encoder, valid_table)

        torch.manual_seed(cfg.train.seed)
        model = MultitaskRanker(cfg, encoder, sparse=cfg.train.sparse_embeddings,
                                id_tables=cfg.train.embeddings == "local")
        model.to(group.device)
        self.train_step = TrainStep(cfg, model, group, encoder)
        if saved:
            self.train_step.resume(saved)
        self.model, self.encoder, self.layout, self.local = model, encoder, layout, local
        self.policy = EarlyStopping(cfg.train.patience) if early_stopping else None

        if group.is_main and self.run_dir is not None:  # the first write: everything above passed
            self.run_dir.mkdir(parents=True, exist_ok=True)
            recovery.remove_leftovers(self.run_dir)
            recovery.set_aside(refused)
            if saved and refused:
                ckpt.mark_latest(self.run_dir, Path(recovery.CHECKPOINTS) / saved["path"].name)
        cost = multiplications(model)
        self.log(f"{cfg.model.kind}: {cost['serving']:,} multiplications per example "
                 f"(+{cost['shallow_tower']:,} in the training-only shallow tower); "
                 f"{group.world} process(es) on {group.device}, {layout.shards} shard(s) of "
                 f"{layout.part_rows} rows per step, shuffle window {layout.window_rows:,} rows")
        if self.train_step.tables is not None:
            self.log(f"sharded id tables: {self.train_step.tables.describe()}")
        self.progress = {
            "global_step": state.get("global_step", 0), "days_done": list(done), "cursor": cursor,
            "days": state.get("days", []), "partial": state.get("partial"),
            "skipped_found": _merge_counts(state.get("skipped_found", {}), prepared.skipped),
            "skipped_files": state.get("skipped_files", []) + skipped_files,
        }
        self.bar = ProgressBar(cfg.train.progress and group.is_main)
        last = self._train(prepared.days, valid) or (saved["path"] if saved else None)
        if self.train_step.average is not None and self.policy is None:
            self.train_step.average.apply()  # under early stopping the kept epoch's average is in
        self._write_metrics()
        trained = self.train_step.export()
        group.barrier()  # every process returns once rank 0's last checkpoint is in place
        return LoopResult(trained, encoder, self.progress["global_step"], self._metrics(),
                          self.run_dir, last)

    # --- resuming -------------------------------------------------------------------------

    def _find_checkpoint(self) -> tuple[dict[str, Any] | None, list[Path]]:
        if self.run_dir is None:
            if self.options.resume:
                raise ConfigError("resume: needs a run folder to resume from")
            return None, []
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
            recovery.check_resume(saved["config"], self.config)
            self.log(f"resuming from {saved['path'].name} (step {step})")
        return saved, refused

    def _data_order(self, saved: dict[str, Any]) -> dict[str, Any]:
        """Settings that fix the order of the rows; a resumed run must keep the checkpoint's."""
        wanted = {"shards": self.options.shards, "shuffle_buffer": self.options.shuffle_buffer,
                  "epochs_per_day": self.options.epochs_per_day}
        if not saved:
            return {"shards": wanted["shards"] or self.group.world,
                    "shuffle_buffer": wanted["shuffle_buffer"] or self.source.default_shuffle_buffer,
                    "epochs_per_day": wanted["epochs_per_day"] or 1}
        recovery.check_data_order(saved, wanted)
        return dict(saved)

    def _check_cursor(self, cursor: dict[str, Any], todo: list[Any]) -> None:
        if cursor["day"] is None:
            return
        where = str(getattr(self.source, "root", "the data"))
        if not todo or todo[0].name != cursor["day"]:
            raise DataError(f"the checkpoint stopped inside day {cursor['day']}, which is not the "
                            "first unfinished day in the data", file=where)
        if todo[0].fingerprint() != cursor["fingerprint"]:
            raise DataError(f"day {cursor['day']} changed since the checkpoint (files added, removed "
                            "or resized); resume needs the same data", file=where)

    def _valid_batch(self, encoder: FeatureEncoder, table: pa.Table | None) -> Batch | None:
        if table is None or not self.group.is_main:
            return None
        table, reasons = drop_bad_rows(self.config, table, self.options.skip_bad_rows)
        if reasons:
            self.log(f"validation data: skipping {sum(reasons.values()):,} bad rows")
        return encoder.transform(table)

    def _log_skipped(self, rows: Counter, files: list[dict[str, Any]]) -> None:
        for f in files:
            self.log(f"skipping file {f['path']} ({f['reason']}): {f['message']}")
        if rows:
            detail = ", ".join(f"{n:,} {reason}" for reason, n in sorted(rows.items()))
            self.log(f"skipping {sum(rows.values()):,} bad rows: {detail}")

    # --- the days ---------------------------------------------------------------------------

    def _train(self, todo: list[Day], valid: Batch | None) -> Path | None:
        """The remaining days as one stream of steps: reading runs ahead across day ends."""
        p, every = self.progress, self.options.checkpoint_every
        self.stopped: str | None = None
        items = self._step_parts(todo, dict(p["cursor"]))
        if self.options.prefetch:
            items = prefetch(items, self.options.prefetch)
        last, current = None, None
        for day, epoch, step, parts in items:
            if day.name == self.stopped:
                continue  # read ahead before early stopping: never trained
            if current is None:
                current = self._start_day(day)
            steps = current.steps
            if parts is not None:
                if step == 0 or self.bar.label is None:
                    self.bar.start(day.num_rows, f"{day.name} epoch {epoch + 1}")
                self._step(parts, day, epoch, step, current)
                p["cursor"] = self._next_cursor(day, epoch, step, steps)
            if parts is None or step + 1 == steps:
                self.bar.stop()
                self._end_epoch(current, valid)
            if p["cursor"]["day"] != day.name:
                last = self._finish_day(current, valid)
                current = None
            elif p["global_step"] % every == 0 and parts is not None:
                last = self._checkpoint(self._partial(current))
        return last

    def _step_parts(self, todo: list[Day], cursor: dict[str, Any]
                    ) -> Iterator[tuple[Day, int, int, tuple[StepPart, ...] | None]]:
        """(day, epoch, step, one part per local shard) for every remaining step, in order; a day
        without steps yields one ``None`` so it is still finished and recorded."""
        seed = self.config.train.seed
        for day in todo:
            steps = self.layout.steps(day)
            resumed = cursor["day"] == day.name
            epoch0, step0 = (cursor["epoch"], cursor["step"]) if resumed else (0, 0)
            if not steps:
                yield day, 0, 0, None
            for epoch in range(epoch0, self.order["epochs_per_day"]):
                if self.stopped == day.name:
                    break
                first = step0 if epoch == epoch0 else 0
                at = ShardCursor(day, day.ordinal, epoch, first)
                streams = [shard_steps(self.encoder, self.layout, s, at, seed,
                                       self.options.skip_bad_rows) for s in self.local]
                for step, parts in zip(range(first, steps), zip(*streams, strict=True), strict=True):
                    yield day, epoch, step, parts

    def _start_day(self, day: Day) -> _Day:
        p = self.progress
        width = self.n_tasks + 1 + len(_REASON_KEYS)
        current = _Day(day, torch.zeros(width, dtype=torch.float64),
                       torch.zeros(self.n_tasks, dtype=torch.float64),
                       steps=self.layout.steps(day))
        resumed = p["cursor"]["day"] == day.name
        if resumed and p["partial"]:
            partial = p["partial"]
            if self.group.is_main:  # the saved totals are already summed over processes
                current.acc += torch.tensor(partial["acc"], dtype=torch.float64)
                current.epoch_acc += torch.tensor(partial["epoch_acc"], dtype=torch.float64)
            current.epochs = list(partial["epochs"])
            current.before, current.cpu_before = partial["seconds"], partial["cpu_seconds"]
        epochs = self.order["epochs_per_day"]
        where = f", resuming at epoch {p['cursor']['epoch'] + 1} step {p['cursor']['step']}" \
            if resumed else ""
        self.log(f"day {day.name}: {day.num_rows:,} rows, {current.steps:,} steps x "
                 f"{epochs} epoch(s){where}")
        return current

    def _step(self, parts: tuple[StepPart, ...], day: Day, epoch: int, step: int,
              current: _Day) -> None:
        seeds = [_step_seed(self.config.train.seed, day.ordinal, epoch, step, shard)
                 for shard in self.local]
        shares = self.train_step([part.batch for part in parts], seeds)
        n = self.n_tasks
        current.acc[:n] += shares
        current.epoch_acc += shares
        for part in parts:
            current.acc[n] += len(part.batch)
            for reason, count in part.skipped.items():
                current.acc[n + 1 + _REASON_KEYS.index(reason)] += count
        current.steps_run += 1
        self.progress["global_step"] += 1
        self.bar.advance(sum(len(part.batch) for part in parts),
                         named_losses(self.config.tasks, shares.tolist())["total"])

    def _next_cursor(self, day: Day, epoch: int, step: int, steps: int) -> dict[str, Any]:
        epoch, step = (epoch, step + 1) if step + 1 < steps else (epoch + 1, 0)
        if epoch == self.order["epochs_per_day"] or self.stopped == day.name:
            return dict(_NO_CURSOR)
        return {"day": day.name, "epoch": epoch, "step": step,
                "fingerprint": self.fingerprints[day.name]}

    def _end_epoch(self, current: _Day, valid: Batch | None) -> None:
        """Record the epoch's mean loss; under early stopping, validate and maybe stop the day."""
        steps = max(current.steps, 1)
        losses = (self._reduced(current.epoch_acc) / steps).tolist()
        current.epochs.append(named_losses(self.config.tasks, losses))
        current.epoch_acc.zero_()
        if self.policy is None:
            return
        with self._averaged():  # validate and keep the averaged weights, train on the others
            current.valid.append(validation_losses(self.model, valid, self.config.tasks,
                                                   self.group.device))
            total = early_stopping_loss(current.valid[-1], self.config)
            self.log(f"epoch {len(current.epochs)}: train {current.epochs[-1]['total']:.6g} "
                     f"valid {total:.6g} ({self.config.train.early_stopping})")
            stop = self.policy.update(total, self.model, self.train_step.optimizer)
        if stop:
            self.stopped = current.day.name
            self.progress["cursor"] = dict(_NO_CURSOR)

    def _averaged(self) -> contextlib.AbstractContextManager[None]:
        """The weight average in the model for the block (``train.weight_averaging``)."""
        average = self.train_step.average
        return average.applied() if average is not None else contextlib.nullcontext()

    def _finish_day(self, current: _Day, valid: Batch | None) -> Path | None:
        day, seconds, cpu = current.day, current.seconds(), current.cpu_seconds()
        totals = self._reduced(current.acc)
        n = self.n_tasks
        for b in self.bad_files:
            if b.day == day.name and b.rows:
                totals[n + 1 + _REASON_KEYS.index(b.reason)] += b.rows
        steps = current.steps * len(current.epochs)
        losses = (totals[:n] / max(steps, 1)).tolist()
        trained = int(totals[n])
        record = {
            "day": day.name, "rows": day.num_rows, "steps": steps, "rows_trained": trained,
            "rows_skipped": {k: int(v) for k, v in zip(_REASON_KEYS, totals[n + 1:].tolist(),
                                                        strict=True) if v},
            "loss": named_losses(self.config.tasks, losses), "epochs": current.epochs,
            "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
            "examples_per_s": round(trained / seconds, 1) if seconds > 0 else None,
        }
        if self.policy is not None:
            self.policy.restore(self.model, self.train_step.optimizer)
            record["valid"], record["best_epoch"] = current.valid, self.policy.best_epoch
            record["valid_loss"] = current.valid[self.policy.best_epoch]
        elif valid is not None:
            with self._averaged():
                record["valid_loss"] = validation_losses(self.model, valid, self.config.tasks,
                                                         self.group.device)
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

    def _partial(self, current: _Day) -> dict[str, Any]:
        """The day so far, summed over processes, for a mid-day checkpoint."""
        return {"acc": self._reduced(current.acc).tolist(),
                "epoch_acc": self._reduced(current.epoch_acc).tolist(), "epochs": current.epochs,
                "seconds": current.seconds(), "cpu_seconds": current.cpu_seconds()}

    def _reduced(self, acc: torch.Tensor) -> torch.Tensor:
        """``acc`` summed over processes (a collective: every process calls it at the same step)."""
        return self.group.all_reduce_sum(acc.to(self.group.device, copy=True)).cpu()

    # --- checkpoints and metrics (rank 0 writes) --------------------------------------------

    def _checkpoint(self, partial: dict[str, Any] | None) -> Path | None:
        p = self.progress
        p["partial"] = partial
        if self.run_dir is None:
            return None
        tensors = self.train_step.checkpoint()  # sharded tables: every process sends
        average = self.train_step.average
        if average is not None:
            self._check_same_average()
        if not self.group.is_main:
            return None
        state = {
            "global_step": p["global_step"], "cursor": p["cursor"], "days_done": p["days_done"],
            "days": p["days"], "partial": partial, "data_order": self.order,
            "skipped_found": p["skipped_found"], "skipped_files": p["skipped_files"],
            "world_size": self.group.world,
        }
        if average is not None:
            state["average_steps"] = average.steps
        path = recovery.save(self.run_dir, p["global_step"], self.options.keep, config=self.config,
                             encoder_state=self.encoder.state_dict(), state=state, **tensors)
        self.log(f"checkpoint step {p['global_step']} -> {path}")
        return path

    def _check_same_average(self) -> None:
        """Under torchrun, every process must hold the weight average rank 0 writes (a
        collective; identity when alone)."""
        if not self.group.active:
            return
        if len(set(self.group.all_gather_bytes(self.train_step.average.fingerprint()))) > 1:
            raise RuntimeError(f"the weight average differs between processes at step "
                               f"{self.progress['global_step']}")

    def _metrics(self) -> dict[str, Any]:
        p = self.progress
        return {
            "world_size": self.group.world, "shards": self.layout.shards,
            "global_batch": self.config.train.batch_size, "global_step": p["global_step"],
            "device": str(self.group.device), "days": p["days"],
            "skipped": {"rows_found": dict(p["skipped_found"]),
                        "rows_found_total": sum(p["skipped_found"].values()),
                        "files": p["skipped_files"]},
        }

    def _write_metrics(self) -> None:
        if self.group.is_main and self.run_dir is not None:
            ckpt.write_json(self.run_dir / METRICS, self._metrics())


def _quiet(_message: str) -> None:
    return None


def _merge_counts(a: dict[str, int], b: Counter) -> dict[str, int]:
    out = Counter(a)
    out.update(b)
    return dict(out)


def _step_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(1))

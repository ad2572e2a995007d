"""The one training step: every loop, source and process count trains through ``TrainStep``.

A step takes the global batch as *parts*, one per shard this process owns, and computes

    L = sum_k w_k * (sum over the global batch of task k's loss) / (global count of task k labels)
        + (sum of the adversary's position loss) / (global count of known positions)

Each part's share of L is back-propagated on its own (DDP all-reduces with the last part), so
K shards on 1 process or on K processes give the same gradients up to float summation order,
and a label that is absent (NaN) counts in neither sum nor count. Dropout, gate dropout and
position dropout of part i draw from a generator reseeded with ``seeds[i]``: a step's randomness
depends on its coordinates only, which is what lets a killed run resume exactly.

Settings that change the step are applied here and nowhere else: ``train.precision`` (bf16
autocast of the forward pass; losses in fp32), ``train.compile`` (``torch.compile`` of the
forward; refused under torchrun, where it was never tested), the optimiser (``make_optimizer``)
and the device (batches copied from pinned memory when it is CUDA). The model's own penalty
(the shallow tower's smoothness) is added once per step, and the tower's exposure counts (what
its serving value averages over) are summed over processes so every rank holds the same. There
is no gradient clipping: no run config asks for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import ConfigError, RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.adversarial import position_loss
from watchnext.model.ranker import MultitaskRanker, RankerOutput
from watchnext.train.averaging import WeightAverage
from watchnext.train.distributed import Distributed
from watchnext.train.losses import per_task_losses, weighted_total
from watchnext.train.optim import make_optimizer
from watchnext.train.speed import autocast

MOMENTUM = "rowwise_adagrad_sum"  # optimizer.safetensors: a sharded table's Adagrad state


def check_step_settings(config: RunConfig, group: Distributed) -> None:
    """Refuse, before anything is built, the settings the step cannot honour in this run."""
    if config.train.compile and group.active:
        raise ConfigError("train.compile: not supported with several processes (torchrun); "
                          "set train.compile = false")


class TrainStep:
    """Model, optimiser and the step; ``model`` must already be on ``group.device``.

    With ``train.embeddings = "sharded"`` the model is built without its id tables (the
    ``id_tables=False`` ranker) and the step holds them as TorchRec's sharded tables
    (train/sharded.py, which needs ``encoder``); ``state``, ``restore`` and ``export`` then
    move them in and out as the plain ranker's weights, so checkpoints look the same.
    """

    def __init__(self, config: RunConfig, model: MultitaskRanker, group: Distributed,
                 encoder: FeatureEncoder | None = None):
        check_step_settings(config, group)
        self.config, self.model, self.group = config, model, group
        self.device = group.device
        self.optimizer = make_optimizer(model, config)
        self.loss_weights = torch.tensor([t.loss_weight for t in config.tasks], device=self.device)
        self.tables = None
        if config.train.embeddings == "sharded":
            try:
                from watchnext.train.sharded import ShardedTables
            except ImportError as exc:
                raise ConfigError("train.embeddings = 'sharded' needs TorchRec: install the "
                                  f"`sharded` extra (README, Sharded id tables) ({exc})") from exc
            self.tables = ShardedTables(config, encoder, model, group)
            self.encoder = encoder
            self.net = self.tables.dmp
        else:
            self.net = group.wrap(model)
        self.forward = torch.compile(self.net) if config.train.compile else self.net
        self.num_tasks = len(config.tasks)
        decay = config.train.weight_averaging
        self.average = WeightAverage(model, decay) if decay else None

    def __call__(self, parts: Sequence[Batch], seeds: Sequence[int]) -> torch.Tensor:
        """One optimiser step; returns this process's share of the per-task losses, ``[T]``."""
        self.model.train()
        batches = [to_device(b, self.device) for b in parts]
        counts = [self._counts(b) for b in batches]
        total = self.group.all_reduce_sum(torch.stack(counts).sum(0)).clamp_min(1)
        self.optimizer.zero_grad(set_to_none=True)
        exposure = _StepExposure(self.model.shallow_tower, self.group)
        fractions = [c / total for c in counts]
        if self.tables is not None:
            shares = self._sharded_step(batches, seeds, fractions, exposure)
        else:
            shares = self._local_step(batches, seeds, fractions, exposure)
        exposure.finish()
        self.optimizer.step()
        if self.average is not None:
            self.average.update()
        return shares.cpu()

    def _local_step(self, batches: list[Batch], seeds: Sequence[int],
                    fractions: list[torch.Tensor], exposure: _StepExposure) -> torch.Tensor:
        """Part by part, each back-propagated on its own; DDP all-reduces with the last."""
        shares = torch.zeros(self.num_tasks, dtype=torch.float64, device=self.device)
        for i, (batch, seed) in enumerate(zip(batches, seeds, strict=True)):
            torch.manual_seed(seed)
            last = i == len(batches) - 1
            exposure.start_part()
            with contextlib.nullcontext() if last or not self.group.active else self.net.no_sync():
                with autocast(self.config.train.precision, self.device):
                    out = self.forward(batch)
                share, loss = self._part_loss(out, batch, fractions[i])
                loss = loss * self.group.world  # DDP averages over processes: undo it
                if last:  # the model's penalty once per step (the same on every process)
                    loss = loss + self.model.penalty().to(loss.device)
                loss.backward()
            exposure.end_part()
            shares += share.detach().double()
        return shares

    def _sharded_step(self, batches: list[Batch], seeds: Sequence[int],
                      fractions: list[torch.Tensor], exposure: _StepExposure) -> torch.Tensor:
        """All parts in one forward (one table lookup) and one backward: the fused table
        optimiser updates once per backward, so this is what makes K parts one update."""
        outputs = self.net(batches, seeds, exposure.start_part, exposure.end_part)
        shares, total = [], self.model.penalty().to(self.device)
        for out, batch, fraction in zip(outputs, batches, fractions, strict=True):
            share, loss = self._part_loss(out, batch, fraction)
            shares.append(share.detach().double())
            total = total + loss * self.group.world  # DDP averages over processes: undo it
        total.backward()
        return torch.stack(shares).sum(0)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The plain ranker's weights and the optimiser's tensors, as a checkpoint stores them.
        With sharded tables a collective (every process calls it); complete on rank 0 only
        (the other processes get empty dicts: rank 0 writes checkpoints)."""
        if self.tables is None and not self.group.is_main:
            return {}, {}
        weights = dict(self.model.state_dict())
        optimizer = ckpt.optimizer_tensors(self.optimizer)
        if self.tables is not None:
            tables, states = self.tables.gather()
            weights.update(tables)
            optimizer.update(states)
        return weights, optimizer

    def checkpoint(self) -> dict[str, Any]:
        """``state`` as ``save_checkpoint``'s ``model``, ``optimizer`` and ``trained``: with
        ``train.weight_averaging`` the model a checkpoint serves is the average (as the loop
        returns it), and the trained weights are kept beside it to resume from. A collective
        like ``state``; complete on rank 0 only."""
        weights, optimizer = self.state()
        if self.average is None or not weights:
            return {"model": weights, "optimizer": optimizer}
        return {"model": self.average.averaged(weights), "optimizer": optimizer,
                "trained": weights}

    def resume(self, saved: dict[str, Any]) -> None:
        """Continue from ``read_checkpoint``'s result (on every process): weights, optimiser
        and, with ``train.weight_averaging``, the average and its step count."""
        if self.average is None:
            self.restore(saved["weights"], saved["optimizer"])
            return
        steps = saved["state"].get("average_steps")
        if "trained" not in saved or steps is None:
            raise ckpt.CheckpointError(f"{saved['path']}: holds no weight average "
                                       "(trained.safetensors, average_steps), but "
                                       "train.weight_averaging is on")
        self.restore(saved["trained"], saved["optimizer"])
        self.average.load(saved["weights"], steps)

    def restore(self, weights: dict[str, torch.Tensor], optimizer: dict[str, torch.Tensor]) -> None:
        """Load ``state``'s output (a checkpoint's), on every process."""
        if self.tables is None:
            self.model.load_state_dict(weights)
            ckpt.load_optimizer_tensors(self.optimizer, optimizer)
            return
        self.model.load_state_dict({k: v for k, v in weights.items() if not self.tables.is_table(k)})
        ckpt.load_optimizer_tensors(self.optimizer, {k: v for k, v in optimizer.items()
                                                     if not k.startswith(MOMENTUM)})
        self.tables.restore(weights, optimizer)

    def export(self) -> MultitaskRanker:
        """The trained ranker. With sharded tables a collective: rank 0 gets the plain ranker
        (tables gathered; what serving loads), the other processes their table-less one."""
        if self.tables is None:
            return self.model
        weights, _ = self.state()
        if not self.group.is_main:
            return self.model
        plain = MultitaskRanker(self.config, self.encoder)
        plain.load_state_dict(weights)
        return plain

    def _counts(self, batch: Batch) -> torch.Tensor:
        """Per-task label counts, then the count of known positions (the adversary's rows)."""
        labels = (~torch.isnan(batch.labels)).sum(0)
        known = (batch.position > 0).sum().reshape(1)
        return torch.cat([labels, known]).to(torch.float64)

    def _part_loss(self, out: RankerOutput, batch: Batch, fraction: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """This part's per-task share of the step loss, and its share of L (adversary included)."""
        losses = per_task_losses(out.logits.float(), batch.labels, self.model.is_binary)
        share = losses * fraction[:self.num_tasks].to(losses.dtype)
        loss = weighted_total(share, self.loss_weights)
        if out.position_logits is not None:
            adversary = position_loss(out.position_logits.float(), batch.position)
            loss = loss + adversary * fraction[self.num_tasks].to(adversary.dtype)
        return share, loss


class _StepExposure:
    """The shallow tower's exposure counts (what its serving value averages over) within a step.

    Every part of a step sees the counts as they were when the step began, and the step's counts
    of all parts on all processes are added once it ends. So the serving value a part trains
    against does not depend on how the global batch is split over processes: K shards give the
    same model on 1 process or on K.
    """

    def __init__(self, tower: torch.nn.Module | None, group: Distributed):
        self.tower, self.group = tower, group
        if tower is not None:
            self.start = tower.exposure.clone()
            self.counted = torch.zeros_like(self.start)

    def start_part(self) -> None:
        if self.tower is not None:
            self.tower.exposure.copy_(self.start)

    def end_part(self) -> None:
        if self.tower is not None:
            self.counted += self.tower.exposure - self.start

    def finish(self) -> None:
        if self.tower is not None:
            self.tower.exposure.copy_(self.start + self.group.all_reduce_sum(self.counted))


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch's tensors on ``device``; to CUDA through pinned memory, without blocking."""
    if device.type == "cpu":
        return batch
    return Batch(**{k: v.pin_memory().to(device, non_blocking=True) if torch.is_tensor(v) else v
                    for k, v in vars(batch).items()})

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

import torch

from watchnext.config import ConfigError, RunConfig
from watchnext.data.batch import Batch
from watchnext.model.adversarial import position_loss
from watchnext.model.ranker import MultitaskRanker
from watchnext.train.averaging import WeightAverage
from watchnext.train.distributed import Distributed
from watchnext.train.losses import per_task_losses, weighted_total
from watchnext.train.optim import make_optimizer
from watchnext.train.speed import autocast


def check_step_settings(config: RunConfig, group: Distributed) -> None:
    """Refuse, before anything is built, the settings the step cannot honour in this run."""
    if config.train.compile and group.active:
        raise ConfigError("train.compile: not supported with several processes (torchrun); "
                          "set train.compile = false")
    if config.train.weight_averaging and group.active:
        raise ConfigError("train.weight_averaging: not supported with several processes "
                          "(torchrun); set train.weight_averaging = 0")


class TrainStep:
    """Model, optimiser and the step; ``model`` must already be on ``group.device``."""

    def __init__(self, config: RunConfig, model: MultitaskRanker, group: Distributed):
        check_step_settings(config, group)
        self.config, self.model, self.group = config, model, group
        self.device = group.device
        self.optimizer = make_optimizer(model, config)
        self.loss_weights = torch.tensor([t.loss_weight for t in config.tasks], device=self.device)
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
        shares = torch.zeros(self.num_tasks, dtype=torch.float64, device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        exposure = _StepExposure(self.model.shallow_tower, self.group)
        for i, (batch, seed) in enumerate(zip(batches, seeds, strict=True)):
            torch.manual_seed(seed)
            last = i == len(batches) - 1
            exposure.start_part()
            with contextlib.nullcontext() if last or not self.group.active else self.net.no_sync():
                share, loss = self._part_loss(batch, counts[i] / total)
                loss = loss * self.group.world  # DDP averages over processes: undo it
                if last:  # the model's penalty once per step (the same on every process)
                    loss = loss + self.model.penalty().to(loss.device)
                loss.backward()
            exposure.end_part()
            shares += share.detach().double()
        exposure.finish()
        self.optimizer.step()
        if self.average is not None:
            self.average.update()
        return shares.cpu()

    def _counts(self, batch: Batch) -> torch.Tensor:
        """Per-task label counts, then the count of known positions (the adversary's rows)."""
        labels = (~torch.isnan(batch.labels)).sum(0)
        known = (batch.position > 0).sum().reshape(1)
        return torch.cat([labels, known]).to(torch.float64)

    def _part_loss(self, batch: Batch, fraction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This part's per-task share of the step loss, and its share of L (adversary included)."""
        with autocast(self.config.train.precision, self.device):
            out = self.forward(batch)
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

"""The one validation loss: per-task mean over the rows that carry each label, and the total.

Positions are used as logged (the bias is part of what is fitted), in fp32, in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from watchnext.config import TaskSpec
from watchnext.data.batch import Batch, iterate
from watchnext.model.ranker import MultitaskRanker
from watchnext.train.losses import named_losses, per_task_losses
from watchnext.train.step import to_device


@torch.inference_mode()
def validation_losses(model: MultitaskRanker, batch: Batch, tasks: Sequence[TaskSpec],
                      device: torch.device, chunk: int = 8192) -> dict[str, float]:
    """``{task: mean loss, ..., "total": sum_k w_k * loss_k}`` over ``batch``."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(tasks), dtype=torch.float64)
    counts = torch.zeros_like(sums)
    for mb in iterate(batch, chunk):
        mb = to_device(mb, device)
        present = (~torch.isnan(mb.labels)).sum(0).cpu().to(torch.float64)
        losses = per_task_losses(model(mb).logits, mb.labels, model.is_binary)
        sums += losses.cpu().to(torch.float64) * present
        counts += present
    model.train(was_training)
    return named_losses(tasks, (sums / counts.clamp_min(1)).tolist())

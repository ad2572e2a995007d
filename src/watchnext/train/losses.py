"""Per-task losses: cross-entropy for binary tasks, squared error for regression.

A label that is NaN (absent, e.g. an unanswered survey) contributes nothing to its task's loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from watchnext.config import RunConfig, TaskSpec


def per_task_losses(logits: torch.Tensor, labels: torch.Tensor, is_binary: torch.Tensor
                    ) -> torch.Tensor:
    """Mean loss per task over the rows that carry that task's label, ``[T]``."""
    present = ~torch.isnan(labels)
    target = torch.where(present, labels, torch.zeros_like(labels))
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    squared = (logits - target) ** 2
    elementwise = torch.where(is_binary, bce, squared) * present
    return elementwise.sum(0) / present.sum(0).clamp_min(1)


def weighted_total(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (losses * weights).sum()


def named_losses(tasks: Sequence[TaskSpec], values: Sequence[float]) -> dict[str, float]:
    """Per-task losses by name, and ``total``: their sum weighted by each task's loss_weight."""
    out = {t.name: float(v) for t, v in zip(tasks, values, strict=True)}
    out["total"] = float(sum(t.loss_weight * v for t, v in zip(tasks, values, strict=True)))
    return out


def early_stopping_loss(valid: dict[str, float], config: RunConfig) -> float:
    """The validation loss that picks the epoch to keep (``train.early_stopping``).

    ``"total"``: the weighted sum over all tasks. ``"engagement"``: the weighted sum over the
    engagement tasks, the ones the shallow tower is part of (their loss is computed with the
    logged positions). Why: the satisfaction heads can start to overfit while the engagement
    heads still learn relevance; stopping then leaves the click model underfitted, and relevance
    that the logging policy sorted on is left for the tower to absorb (docs/debiasing.md).
    """
    if config.train.early_stopping == "total":
        return valid["total"]
    return sum(t.loss_weight * valid[t.name] for t in config.tasks if t.group == "engagement")

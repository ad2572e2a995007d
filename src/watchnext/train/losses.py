"""Per-task losses: cross-entropy for binary tasks, squared error for regression.

A label that is NaN (absent, e.g. an unanswered survey) contributes nothing to its task's loss.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


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

"""The final ranking score: a weighted multiplication of the task predictions.

    score = prod_t pred_t ** w_t

computed as exp(sum_t w_t * log pred_t) for stability. Regression predictions are mapped to a
positive scale first (``positive_map``: exp, softplus or identity clipped at a tiny epsilon).
A negative exponent (e.g. for dismissals) makes the objective count against the score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from watchnext.config import TaskSpec

_EPS = 1e-9


def log_positive(pred: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """log of the prediction on a positive scale (regression values mapped first)."""
    if task.type == "regression" and task.positive_map == "exp":
        return pred
    if task.type == "regression" and task.positive_map == "softplus":
        return torch.log(F.softplus(pred).clamp_min(_EPS))
    return torch.log(pred.clamp_min(_EPS))


def log_combined_score(predictions: torch.Tensor, tasks: Sequence[TaskSpec],
                       exponents: Sequence[float] | None = None) -> torch.Tensor:
    """sum_t w_t * log(positive(pred_t)), ``[N]``; ``exponents`` overrides the config's."""
    weights = exponents if exponents is not None else [t.exponent for t in tasks]
    total = torch.zeros(predictions.shape[0], dtype=predictions.dtype)
    for j, (task, w) in enumerate(zip(tasks, weights, strict=True)):
        if w:
            total = total + w * log_positive(predictions[:, j], task)
    return total


def combined_score(predictions: torch.Tensor, tasks: Sequence[TaskSpec],
                   exponents: Sequence[float] | None = None) -> torch.Tensor:
    """score = prod_t pred_t ** w_t, ``[N]``."""
    return torch.exp(log_combined_score(predictions, tasks, exponents))

"""Adversarial debiasing: make the shared representation useless for predicting the position.

The baseline the paper compares the shallow tower with (section 5.3, "adversarial loss"):

    h                      = SharedBottom(x)
    q(position | h)        = softmax(W_2 relu(W_1 R_lambda(h)))      the adversary
    L                      = sum_k w_k L_k  +  CE(q, position)

``R_lambda`` is a gradient-reversal layer: the identity going forward, ``-lambda * grad`` going
back. The adversary minimises the cross-entropy; the bottom layer receives the reversed gradient,
i.e. it *maximises* it, so features from which the logging policy's slot choice can be read are
pushed out of ``h``. Rows with a missing position (0) are not adversary targets. Training only:
the head never touches the task logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """R_lambda(x): identity forward, gradient multiplied by ``-weight`` backward."""
    return _ReverseGradient.apply(x, weight)


class PositionAdversary(nn.Module):
    """Predicts the display position (classes 0..max_position) from the shared representation."""

    def __init__(self, in_dim: int, max_position: int, weight: float = 1.0, hidden: int = 32):
        super().__init__()
        self.weight = weight
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, max_position + 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Position logits ``[N, max_position + 1]``."""
        return self.net(reverse_gradient(h, self.weight))


def position_loss(logits: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the adversary over rows whose position is known (> 0)."""
    known = position > 0
    if not known.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], position[known])

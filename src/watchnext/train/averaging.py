"""Weight averaging: an exponential moving average (EMA) of the weights, ``train.weight_averaging``.

Why: the last iterate of Adam sits wherever the last few hundred noisy steps left it, and which
epoch early stopping keeps is itself noisy; two trainings that differ only in their seed then
rank differently (the A/A arm of docs/experiments.md). The average of the recent iterates is a
point near the centre of where SGD wanders, so it moves less from seed to seed (Polyak and
Juditsky 1992; the EMA form as in Tensorflow's ExponentialMovingAverage).

After every optimiser step, with t steps taken and decay d:

    d_t = min(d, (1 + t) / (10 + t))      warm-up: early on, the average forgets the random init
    avg <- d_t * avg + (1 - d_t) * w

Validation, early stopping and the returned model all use ``avg``; training continues from ``w``.
Only floating-point parameters are averaged; buffers (the shallow tower's exposure counts) are
the model's own.

A checkpoint stores both (train/step.py): ``avg`` as the model it serves, ``w`` and the step
count t to resume from; so a resumed run continues the same average. Under torchrun every
process applies the same all-reduced step to the same weights, so every process holds the same
average; ``fingerprint`` lets the loop check that at each checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping

import torch
from torch import nn


class WeightAverage:
    """The EMA of ``model``'s parameters with decay ``decay`` (0 < decay < 1)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        named = [(n, p) for n, p in model.named_parameters() if p.dtype.is_floating_point]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.average = [p.detach().clone() for p in self.params]
        self.steps = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (call after each optimiser step)."""
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1 - d)

    @torch.no_grad()
    def apply(self) -> None:
        """Put the averaged weights into the model for good."""
        torch._foreach_copy_([p.data for p in self.params], self.average)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model inside the block, the trained ones after it."""
        trained = [p.detach().clone() for p in self.params]
        self.apply()
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], trained)

    def averaged(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``weights`` (the model's state dict) with the average in place of the trained
        parameters: the model a checkpoint serves."""
        return {**weights, **{n: a.detach() for n, a in zip(self.names, self.average, strict=True)}}

    @torch.no_grad()
    def load(self, averaged: Mapping[str, torch.Tensor], steps: int) -> None:
        """Take the average back from ``averaged`` (``averaged``'s output, as a checkpoint
        stored it) after ``steps`` updates."""
        torch._foreach_copy_(self.average, [averaged[n].to(a.device)
                                            for n, a in zip(self.names, self.average, strict=True)])
        self.steps = steps

    def fingerprint(self) -> bytes:
        """A SHA-256 of the average's bytes: equal on two processes iff their averages are."""
        digest = hashlib.sha256(str(self.steps).encode())
        for a in self.average:
            digest.update(a.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.digest()

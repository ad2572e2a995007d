"""Early stopping: a policy on top of the training loop, consulted after every epoch.

Why keep the best epoch rather than the last: with ``patience`` epochs of waiting, the last
``patience`` epochs are by construction no better on validation data than the best one.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch


class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, patience: int, min_delta: float = 1e-5):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_epoch, self.waited, self.epoch = math.inf, -1, 0, -1
        self._snapshot: dict[str, Any] | None = None

    def update(self, loss: float, model: torch.nn.Module, optimizer: Any) -> bool:
        """Record one epoch's validation loss; True when training should stop."""
        self.epoch += 1
        if loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = loss, self.epoch, 0
            self._snapshot = {"model": copy.deepcopy(model.state_dict()),
                              "optimizer": copy.deepcopy(optimizer.state_dict())}
            return False
        self.waited += 1
        return self.waited > self.patience

    def restore(self, model: torch.nn.Module, optimizer: Any) -> None:
        """Put the best epoch's weights and optimiser state back."""
        if self._snapshot is not None:
            model.load_state_dict(self._snapshot["model"])
            optimizer.load_state_dict(self._snapshot["optimizer"])

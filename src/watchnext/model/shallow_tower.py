"""The shallow tower: learns selection bias from position x device, for engagement tasks only.

    b(p, d)  = W [emb(p), emb(d), emb(p x d)] + c      one bias logit per engagement task
    logit_k  = main_logit_k + b_k(position, device)    for engagement tasks k (before the sigmoid)

At serving the position is unknown (position 0 = missing) and the tower adds one value per
device, ``b(missing, d)``; it shifts every candidate of a request alike, so the order is the main
model's and only the calibration depends on it. How that value is learned is ``missing``:

``"exposure_mean"`` (default): no row ever hides its position. The serving value is derived,

    b(missing, d) = sum_p n(p, d) b(p, d) / sum_p n(p, d)

with ``n`` the training impressions per (position, device), counted as the tower trains. Why:
a row whose position is hidden still trains the main model, which then explains the clicks that
the slot caused with features correlated with the slot, and the tower is left with a curve that
is too flat (docs/debiasing.md measures it).

``"dropout"`` (the paper): a share ``position_dropout`` of training rows have their position
replaced by missing, and ``b(missing, d)`` is a learned value like any other position's.

The output layer starts at zero, so the curve starts flat: bias is learned only where the clicks
show it, never left over from a random initialisation. By default the embeddings feed the output
layer directly (``hidden_units = ()``): the position x device embedding already gives every cell
its own value, and a ReLU layer at the tower's learning rate can die, every unit off and the
curve flat (``bias.hidden_units`` puts one back).

``roughness`` measures how far the curve bends in log-position (zero for a power law
``exam ~ p^-a``) from position ``bias.smooth_from`` on; the ranker adds it to the loss, weighted
by ``bias.smoothness``, so neighbouring slots with few clicks borrow strength. The penalty is
quadratic in the curve, so on a curve that bends it also pulls the whole curve toward flat: it
shrinks the size. The additive-logit curve of a multiplicative click model bends most on its
first step, so ``smooth_from = 2`` (the default) leaves that step free and smooths the tail,
where the slots have the fewest clicks.
"""

from __future__ import annotations

import torch
from torch import nn

from watchnext.model.layers import mlp

MISSING_MODES = ("exposure_mean", "dropout")


class ShallowTower(nn.Module):
    def __init__(self, max_position: int, num_devices: int, num_outputs: int,
                 embedding_dim: int = 8, hidden_units: tuple[int, ...] = (),
                 missing: str = "exposure_mean", position_dropout: float = 0.0,
                 smooth_from: int = 2):
        super().__init__()
        if missing not in MISSING_MODES:
            raise ValueError(f"missing: {missing!r} is not one of {', '.join(MISSING_MODES)}")
        self.num_positions, self.num_devices = max_position + 1, num_devices
        self.missing, self.position_dropout = missing, position_dropout
        self.smooth_from = smooth_from
        self.position_embedding = nn.Embedding(self.num_positions, embedding_dim)
        self.device_embedding = nn.Embedding(num_devices, embedding_dim)
        self.cross_embedding = nn.Embedding(self.num_positions * num_devices, embedding_dim)
        self.hidden = mlp(3 * embedding_dim, hidden_units)
        self.out = nn.Linear(hidden_units[-1] if hidden_units else 3 * embedding_dim, num_outputs)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("exposure", torch.zeros(self.num_positions, num_devices))
        log_p = torch.log(torch.arange(1, self.num_positions, dtype=torch.float32))
        self.register_buffer("log_gap", log_p[1:] - log_p[:-1], persistent=False)

    def forward(self, position: torch.Tensor, device: torch.Tensor) -> torch.Tensor:
        """Bias logits ``[N, num_outputs]``; ``position`` 0 = missing."""
        if self.training and self.missing == "dropout" and self.position_dropout > 0:
            keep = torch.rand(position.shape, device=position.device) >= self.position_dropout
            position = position * keep
        if self.training and self.missing == "exposure_mean":
            cell = position * self.num_devices + device
            self.exposure.view(-1).add_(torch.bincount(cell, minlength=self.exposure.numel())
                                        .to(self.exposure.dtype))
        return self.table()[position, device]

    def table(self, fixed_device: bool = False) -> torch.Tensor:
        """``[num_positions, num_devices, num_outputs]``; row 0 is the serving (missing) value.
        ``fixed_device``: no gradient to the device embedding (see ``roughness``)."""
        pos = torch.arange(self.num_positions, device=self.exposure.device)
        dev = torch.arange(self.num_devices, device=self.exposure.device)
        grid_p, grid_d = pos.repeat_interleave(self.num_devices), dev.repeat(self.num_positions)
        device = self.device_embedding(grid_d)
        h = torch.cat([self.position_embedding(grid_p), device.detach() if fixed_device else device,
                       self.cross_embedding(grid_p * self.num_devices + grid_d)], dim=1)
        table = self.out(self.hidden(h)).view(self.num_positions, self.num_devices, -1)
        if self.missing == "dropout":
            return table
        return torch.cat([self.exposure_mean(table[1:]).unsqueeze(0), table[1:]])

    def exposure_mean(self, per_position: torch.Tensor) -> torch.Tensor:
        """``[devices, outputs]``: the per-position values averaged with the training exposure
        of each device (uniformly for a device never seen in training)."""
        counts = self.exposure[1:]
        total = counts.sum(0, keepdim=True)
        weights = torch.where(total > 0, counts / total.clamp_min(1), 1.0 / counts.shape[0])
        return (weights.unsqueeze(-1) * per_position).sum(0).to(per_position.dtype)

    def roughness(self) -> torch.Tensor:
        """Sum over devices and outputs of squared changes of the slope in log-position,
        ``((b[p+2] - b[p+1]) / log((p+2)/(p+1)) - (b[p+1] - b[p]) / log((p+1)/p))^2`` for
        p >= ``smooth_from``. From 2 the first step is free: the top slots have the most clicks,
        and the additive curve bends most there (penalised, the whole curve shrinks).

        It does not train the device embedding: through the default linear output that only
        shifts a device's curve, which the roughness cannot see, so its gradient would be rounding
        noise that Adam scales up to full steps (for a device with no rows, a random walk); the
        position x device embedding gives every device a shape of its own."""
        slope = torch.diff(self.table(fixed_device=True)[1:], dim=0) / self.log_gap.view(-1, 1, 1)
        return torch.diff(slope[self.smooth_from - 1:], dim=0).pow(2).sum()

    @torch.no_grad()
    def bias_table(self) -> torch.Tensor:
        """Learned bias ``[num_positions, num_devices, num_outputs]`` (row 0: missing position)."""
        return self.table()

"""The shallow tower: learns selection bias from position x device, for engagement tasks only.

    bias(position, device) = MLP([emb(position), emb(device), emb(position x device)])
    logit_k = main_logit_k + bias_k            for engagement tasks k (before the sigmoid)

Position 0 means *missing*. In training 10% of rows have their position dropped to missing, so
the missing-position embedding learns the position-averaged bias. At serving the position is
always missing: the tower then adds one constant per device, which keeps predictions calibrated to
the average slot and leaves the order of candidates in a request (same device) to the main model.
"""

from __future__ import annotations

import torch
from torch import nn

from watchnext.model.layers import mlp


class ShallowTower(nn.Module):
    def __init__(self, max_position: int, num_devices: int, num_outputs: int,
                 embedding_dim: int = 8, hidden_units: tuple[int, ...] = (16,),
                 position_dropout: float = 0.1):
        super().__init__()
        self.num_positions, self.num_devices = max_position + 1, num_devices
        self.position_embedding = nn.Embedding(self.num_positions, embedding_dim)
        self.device_embedding = nn.Embedding(num_devices, embedding_dim)
        self.cross_embedding = nn.Embedding(self.num_positions * num_devices, embedding_dim)
        self.hidden = mlp(3 * embedding_dim, hidden_units)
        self.out = nn.Linear(hidden_units[-1] if hidden_units else 3 * embedding_dim, num_outputs)
        self.position_dropout = position_dropout

    def forward(self, position: torch.Tensor, device: torch.Tensor) -> torch.Tensor:
        """Bias logits ``[N, num_outputs]``; ``position`` 0 = missing."""
        if self.training and self.position_dropout > 0:
            keep = torch.rand(position.shape, device=position.device) >= self.position_dropout
            position = position * keep
        cross = position * self.num_devices + device
        h = torch.cat([self.position_embedding(position), self.device_embedding(device),
                       self.cross_embedding(cross)], dim=1)
        return self.out(self.hidden(h))

    @torch.no_grad()
    def bias_table(self) -> torch.Tensor:
        """Learned bias ``[num_positions, num_devices, num_outputs]`` (row 0: missing position)."""
        was_training = self.training
        self.eval()
        pos = torch.arange(self.num_positions).repeat_interleave(self.num_devices)
        dev = torch.arange(self.num_devices).repeat(self.num_positions)
        table = self.forward(pos, dev).view(self.num_positions, self.num_devices, -1)
        self.train(was_training)
        return table

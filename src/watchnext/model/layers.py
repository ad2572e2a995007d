"""Building blocks: a plain MLP and a group of same-shaped MLPs run as one batched matmul."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(in_dim: int, units: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """Linear + ReLU layers of the given widths (ReLU after every layer)."""
    layers: list[nn.Module] = []
    for out_dim in units:
        layers += [nn.Linear(in_dim, out_dim), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_dim = out_dim
    return nn.Sequential(*layers)


class GroupedMLP(nn.Module):
    """G independent MLPs of identical shape, computed together.

    Experts (G = n experts) and task towers (G = n tasks) are each one ``bmm`` per layer instead
    of a Python loop over modules. Input is ``[N, d]`` (shared by all members) or ``[G, N, d]``;
    output is ``[G, N, units[-1]]``. ``final_relu=False`` leaves the last layer linear (a tower's
    logit). A shared ``[N, d]`` input is expanded without a copy (stride 0).
    """

    def __init__(self, groups: int, in_dim: int, units: tuple[int, ...], final_relu: bool = True):
        super().__init__()
        self.groups, self.units, self.final_relu = groups, units, final_relu
        dims = (in_dim, *units)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(groups, d_in, d_out))
            for d_in, d_out in zip(dims, dims[1:], strict=False))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(groups, 1, d_out)) for d_out in units)
        for w in self.weights:
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.groups, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last or self.final_relu:
                x = torch.relu_(x)  # in place: baddbmm's backward needs its inputs, not its output
        return x

"""Building blocks: a plain MLP and a group of same-shaped MLPs run as one batched matmul."""

from __future__ import annotations

import math

import torch
from torch import nn

ALIGN = 16  # fp32 elements (64 bytes): inner matmul dimensions are padded to a multiple of this


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
    logit). A shared input's first layer is one wide matmul for all members (see
    ``_shared_input_layer``); ReLUs run in place, saving one activation-sized buffer per layer.
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
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            relu = i < last or self.final_relu
            if x.dim() == 2:
                x = _shared_input_layer(x, w, b, relu)
            else:
                x = torch.baddbmm(b, x, w)
                x = torch.relu_(x) if relu else x
        return x


def _shared_input_layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, relu: bool
                        ) -> torch.Tensor:
    """``[N, d]`` x ``[G, d, k]`` -> ``[G, N, k]`` as ONE ``[N, d'] @ [d', G*k]`` matmul.

    One wide matmul beats G narrow ones (and the backward's input gradient is summed over the G
    members by the matmul itself). The bias rides inside it as a column of ones, and the inner
    dimension is zero-padded to a multiple of ``ALIGN``: MKL's fp32 kernels run much slower on an
    odd inner size such as the 165 inputs of 10 x 16 embeddings + 5 dense features. Neither
    changes the result, the parameters or the multiplication count.
    """
    g, d_in, d_out = w.shape
    pad = -(d_in + 1) % ALIGN
    n = x.shape[0]
    x_aug = torch.cat([x, x.new_ones(n, 1), x.new_zeros(n, pad)], dim=1)
    w_aug = torch.cat([w.permute(1, 0, 2).reshape(d_in, g * d_out), b.reshape(1, g * d_out),
                       w.new_zeros(pad, g * d_out)])
    h = x_aug @ w_aug
    h = torch.relu_(h) if relu else h
    return h.view(n, g, d_out).transpose(0, 1)

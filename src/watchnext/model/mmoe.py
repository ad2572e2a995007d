"""Multi-gate Mixture-of-Experts (Ma et al., KDD 2018) as used in the watch-next ranker.

    g_k(x) = softmax(W_k x)                    one gate per task k, over n experts
    f_k(x) = sum_i g_k(x)_i * expert_i(x)      the input to task k's tower
"""

from __future__ import annotations

import torch
from torch import nn

from watchnext.model.layers import GroupedMLP


def gate_dropout(gates: torch.Tensor, p: float, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """Zero each expert's gate weight with probability ``p`` and renormalise to sum 1.

    The paper's fix for gate polarisation: a gate cannot rely on one expert if that expert may
    vanish. A row whose every weight was dropped keeps its original weights.
    """
    keep = torch.rand(gates.shape, generator=generator, device=gates.device) >= p
    kept = gates * keep
    total = kept.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, kept / total.clamp_min(1e-12), gates)


class MMoE(nn.Module):
    """n ReLU-MLP experts shared by all tasks, mixed by one softmax gate per task.

    ``forward(x, gate_x)`` returns the mixed expert outputs ``[n_tasks, N, d]`` and the gate
    weights ``[N, n_tasks, n_experts]`` (kept for expert-utilisation reports).
    """

    def __init__(self, in_dim: int, gate_dim: int, num_experts: int, num_tasks: int,
                 expert_units: tuple[int, ...], gate_dropout: float = 0.1):
        super().__init__()
        self.num_experts, self.num_tasks = num_experts, num_tasks
        self.experts = GroupedMLP(num_experts, in_dim, expert_units)
        self.gates = nn.Linear(gate_dim, num_tasks * num_experts)
        self.gate_dropout = gate_dropout
        self.out_dim = expert_units[-1]

    def forward(self, x: torch.Tensor, gate_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expert_out = self.experts(x)  # [E, N, d]
        logits = self.gates(gate_x).view(-1, self.num_tasks, self.num_experts)
        gates = torch.softmax(logits, dim=-1)  # [N, T, E]
        if self.training and self.gate_dropout > 0:
            gates = gate_dropout(gates, self.gate_dropout)
        mixed = torch.einsum("nte,end->tnd", gates, expert_out)  # [T, N, d]
        return mixed, gates

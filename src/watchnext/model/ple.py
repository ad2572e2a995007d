"""Progressive Layered Extraction (Tang et al., RecSys 2020), the peer of MMoE with private experts.

In MMoE every task mixes the same experts, so tasks that disagree pull those experts apart and one
task's gain is another's loss (the paper's "seesaw"). PLE gives each task k experts of its own
beside m_s shared ones, and stacks L extraction layers so that the split between task-specific and
shared knowledge is made step by step. With q_k^0 = q_s^0 = h, and the first layer's gates reading
the gate input (h, or the raw input x with ``model.gate_input = "input"``):

    E_k^j = [expert_k1^j(q_k^(j-1)) ... expert_km_t^j(q_k^(j-1))]      task k's own m_t experts
    E_s^j = [expert_s1^j(q_s^(j-1)) ... expert_sm_s^j(q_s^(j-1))]      the m_s shared experts
    q_k^j = softmax(W_k^j q_k^(j-1)) . [E_k^j ; E_s^j]                  a gate per task and layer
    q_s^j = softmax(W_s^j q_s^(j-1)) . [E_1^j ; ... ; E_T^j ; E_s^j]    the shared gate, layers j < L
    f_k   = q_k^L                                                       the input to task k's tower

L = 1 is the paper's single-layer CGC (Customized Gate Control). Gate dropout (the watch-next
paper's fix for polarised gates) applies to every gate, as in MMoE.
"""

from __future__ import annotations

import torch
from torch import nn

from watchnext.model.layers import GroupedMLP
from watchnext.model.mmoe import gate_dropout


class ExtractionLayer(nn.Module):
    """One PLE layer. All T·m_t + m_s experts run as one ``GroupedMLP``, ordered task 0's m_t
    experts, ..., task T-1's m_t experts, then the m_s shared ones; the T task gates likewise.

    ``forward(q, gate_q)`` takes ``q`` as ``[N, d]`` (first layer: one input for every expert) or
    ``[T+1, N, d]`` (slots q_1..q_T, then q_s) and ``gate_q`` in the same layout. It returns the
    next layer's input (``[T+1, N, d]``, or ``[T, N, d]`` from the last layer, which has no shared
    gate), the task gates ``[T, N, m_t + m_s]`` (own experts first) and the shared gate
    ``[N, T·m_t + m_s]`` or None.
    """

    def __init__(self, in_dim: int, gate_dim: int, num_tasks: int, task_experts: int,
                 shared_experts: int, expert_units: tuple[int, ...], shared_gate: bool,
                 gate_dropout: float = 0.1):
        super().__init__()
        self.num_tasks, self.task_experts, self.shared_experts = num_tasks, task_experts, shared_experts
        total = num_tasks * task_experts + shared_experts
        self.experts = GroupedMLP(total, in_dim, expert_units)
        self.task_gates = GroupedMLP(num_tasks, gate_dim, (task_experts + shared_experts,),
                                     final_relu=False)
        self.shared_gate = nn.Linear(gate_dim, total) if shared_gate else None
        self.gate_dropout = gate_dropout
        self.out_dim = expert_units[-1]
        # the input slot each expert reads: its task's q_k, or q_s (slot T) for a shared expert
        source = [*torch.arange(num_tasks).repeat_interleave(task_experts).tolist(),
                  *[num_tasks] * shared_experts]
        self.register_buffer("source", torch.tensor(source, dtype=torch.long), persistent=False)

    @property
    def mixing_multiplications(self) -> int:
        """Per example: each task gate weighs m_t + m_s expert outputs, the shared gate all."""
        own_and_shared = self.task_experts + self.shared_experts
        per_task = self.num_tasks * own_and_shared * self.out_dim
        shared = 0 if self.shared_gate is None else len(self.source) * self.out_dim
        return per_task + shared

    def _softmax(self, logits: torch.Tensor) -> torch.Tensor:
        gates = torch.softmax(logits, dim=-1)
        if self.training and self.gate_dropout > 0:
            gates = gate_dropout(gates, self.gate_dropout)
        return gates

    def forward(self, q: torch.Tensor, gate_q: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        t, m_t = self.num_tasks, self.task_experts
        experts = self.experts(q if q.dim() == 2 else q.index_select(0, self.source))  # [G, N, d]
        own = experts[:t * m_t].unflatten(0, (t, m_t))  # [T, m_t, N, d]
        shared = experts[t * m_t:]  # [m_s, N, d]
        gates = self._softmax(self.task_gates(gate_q if gate_q.dim() == 2 else gate_q[:t]))
        weights = gates.permute(0, 2, 1).unsqueeze(-1)  # [T, m_t + m_s, N, 1]
        # weighted sums as broadcast products: an einsum here runs N tiny matmuls per task
        q_tasks = (weights[:, :m_t] * own).sum(1) + (weights[:, m_t:] * shared).sum(1)  # [T, N, d]
        if self.shared_gate is None:
            return q_tasks, gates, None
        shared_gate = self._softmax(self.shared_gate(gate_q if gate_q.dim() == 2 else gate_q[t]))
        q_shared = (shared_gate.t().unsqueeze(-1) * experts).sum(0)  # [N, d]
        return torch.cat([q_tasks, q_shared.unsqueeze(0)]), gates, shared_gate


class PLE(nn.Module):
    """L extraction layers; the last one's task outputs feed the towers.

    ``forward(x, gate_x)`` returns ``f`` ``[T, N, d]`` and the last layer's task gates
    ``[N, T, m_t + m_s]`` (each task's own experts first, then the shared ones), the layout MMoE
    reports, so expert-utilisation reports read both.
    """

    def __init__(self, in_dim: int, gate_dim: int, num_tasks: int, task_experts: int,
                 shared_experts: int, num_layers: int, expert_units: tuple[int, ...],
                 gate_dropout: float = 0.1):
        super().__init__()
        d = expert_units[-1]
        self.layers = nn.ModuleList(
            ExtractionLayer(in_dim if j == 0 else d, gate_dim if j == 0 else d, num_tasks,
                            task_experts, shared_experts, expert_units,
                            shared_gate=j < num_layers - 1, gate_dropout=gate_dropout)
            for j in range(num_layers))
        self.num_tasks = num_tasks
        self.gate_width = task_experts + shared_experts
        self.out_dim = d

    def forward(self, x: torch.Tensor, gate_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, gate_q = x, gate_x
        for layer in self.layers:
            q, gates, _ = layer(q, gate_q)
            gate_q = q
        return q, gates.transpose(0, 1)

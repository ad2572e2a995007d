"""Model cost in multiplications per example, so models are compared at equal cost (paper, 5.2)."""

from __future__ import annotations

from torch import nn

from watchnext.model.layers import GroupedMLP
from watchnext.model.ranker import MultitaskRanker


def _linear_mults(module: nn.Module) -> int:
    total = 0
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features
        elif isinstance(layer, GroupedMLP):
            total += sum(w.numel() for w in layer.weights)
    return total


def multiplications(model: MultitaskRanker) -> dict[str, int]:
    """Multiplications per example by part. ``serving`` excludes the training-only shallow tower.

    Embedding lookups and additions are free; a linear layer costs in x out; MMoE adds the
    gates (gate_dim x T x E) and the mixing (T x E x d).
    """
    parts = {"bottom": _linear_mults(model.bottom)}
    if model.mmoe is not None:
        mmoe = model.mmoe
        parts["experts"] = _linear_mults(mmoe.experts)
        parts["gates"] = _linear_mults(mmoe.gates)
        parts["mixing"] = mmoe.num_tasks * mmoe.num_experts * mmoe.out_dim
    parts["towers"] = _linear_mults(model.towers)
    parts["serving"] = sum(parts.values())
    parts["shallow_tower"] = _linear_mults(model.shallow_tower) if model.shallow_tower else 0
    return parts

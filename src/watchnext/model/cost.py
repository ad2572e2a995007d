"""Model cost in multiplications per example, so models are compared at equal cost (paper, 5.2)."""

from __future__ import annotations

from torch import nn

from watchnext.config import RunConfig
from watchnext.data.encoder import FeatureEncoder
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
    gates (gate_dim x T x E) and the mixing (T x E x d); PLE, per extraction layer, the task gates
    (gate_dim x T x (m_t + m_s)), the shared gate below the last layer (gate_dim x (T m_t + m_s))
    and the mixing each of them does.
    """
    parts = {"bottom": _linear_mults(model.bottom)}
    if model.mmoe is not None:
        mmoe = model.mmoe
        parts["experts"] = _linear_mults(mmoe.experts)
        parts["gates"] = _linear_mults(mmoe.gates)
        parts["mixing"] = mmoe.num_tasks * mmoe.num_experts * mmoe.out_dim
    if model.ple is not None:
        layers = model.ple.layers
        parts["experts"] = sum(_linear_mults(layer.experts) for layer in layers)
        parts["gates"] = sum(_linear_mults(gate) for layer in layers
                             for gate in (layer.task_gates, layer.shared_gate) if gate is not None)
        parts["mixing"] = sum(layer.mixing_multiplications for layer in layers)
    parts["towers"] = _linear_mults(model.towers)
    parts["serving"] = sum(parts.values())
    parts["shallow_tower"] = _linear_mults(model.shallow_tower) if model.shallow_tower else 0
    return parts


def serving_cost(config: RunConfig, encoder: FeatureEncoder) -> int:
    return multiplications(MultitaskRanker(config, encoder))["serving"]


def match_cost(config: RunConfig, encoder: FeatureEncoder, target: int) -> RunConfig:
    """Resize ``config``'s model to about ``target`` multiplications per example.

    SharedBottom widens its last bottom layer; MMoE and PLE resize their experts' last layer (in
    PLE, of every extraction layer). Cost grows monotonically with that width, so a bisection
    finds the closest width.
    """
    field = "bottom_units" if config.model.kind == "shared_bottom" else "expert_units"
    units = getattr(config.model, field)

    def cost_at(width: int) -> int:
        return serving_cost(config.replace(model={field: [*units[:-1], width]}), encoder)

    lo, hi = 1, 8
    while cost_at(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost_at(mid) < target else (lo, mid)
    best = min((lo, hi), key=lambda w: abs(cost_at(w) - target))
    return config.replace(model={field: [*units[:-1], best]})

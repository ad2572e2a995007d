"""The multitask ranker, read top to bottom:

    x      = InputLayer(ids, dense)                  embeddings + numeric features
    h      = SharedBottom(x)                         one shared hidden layer, narrower than x
    f_k    = MMoE(h)_k  or  PLE(h)_k                 (SharedBottom baseline: f_k = h)
    z_k    = Tower_k(f_k)                            one logit (or regression value) per task
    z_k   += ShallowTower(position, device)_k        engagement tasks only
    p_k    = sigmoid(z_k) for binary tasks, z_k for regression

Training minimises the task losses plus ``penalty()``: the shallow tower's roughness across
positions, weighted by ``bias.smoothness``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from watchnext.config import RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.adversarial import PositionAdversary
from watchnext.model.inputs import InputLayer
from watchnext.model.layers import GroupedMLP, mlp
from watchnext.model.mmoe import MMoE
from watchnext.model.ple import PLE
from watchnext.model.shallow_tower import ShallowTower


@dataclass
class RankerOutput:
    logits: torch.Tensor  # [N, T] after the bias is added (what the losses see)
    main_logits: torch.Tensor  # [N, T] the main model alone: the unbiased utility
    gates: torch.Tensor | None  # [N, T, E] for MMoE; PLE: the last layer's, own experts first
    bias: torch.Tensor | None  # [N, n_engagement] shallow-tower logits
    position_logits: torch.Tensor | None = None  # [N, max_position + 1] adversary (training only)


class MultitaskRanker(nn.Module):
    """SharedBottom, MMoE or PLE ranker with an optional shallow tower for selection bias."""

    def __init__(self, config: RunConfig, encoder: FeatureEncoder, sparse: bool = False,
                 id_tables: bool = True):
        """``id_tables=False``: the id embeddings are given to ``forward`` (sharded tables)."""
        super().__init__()
        m, tasks = config.model, config.tasks
        self.kind = m.kind
        self.inputs = InputLayer(encoder, sparse=sparse, id_tables=id_tables)
        self.bottom = mlp(self.inputs.out_dim, m.bottom_units, m.dropout)
        # bottom_units = []: no shared bottom, experts and gates sit on the input layer itself
        bottom_dim = m.bottom_units[-1] if m.bottom_units else self.inputs.out_dim
        self.mmoe: MMoE | None = None
        self.ple: PLE | None = None
        tower_in = bottom_dim
        self.gate_from_input = m.kind != "shared_bottom" and m.gate_input == "input"
        gate_dim = self.inputs.out_dim if self.gate_from_input else bottom_dim
        if m.kind == "mmoe":
            self.mmoe = MMoE(bottom_dim, gate_dim, m.num_experts, len(tasks), m.expert_units,
                             m.gate_dropout)
            tower_in = self.mmoe.out_dim
        elif m.kind == "ple":
            self.ple = PLE(bottom_dim, gate_dim, len(tasks), m.task_experts, m.shared_experts,
                           m.ple_layers, m.expert_units, m.gate_dropout)
            tower_in = self.ple.out_dim
        self.towers = GroupedMLP(len(tasks), tower_in, (*m.tower_units, 1), final_relu=False)
        self.register_buffer("is_binary", torch.tensor([t.type == "binary" for t in tasks]))
        engagement = [i for i, t in enumerate(tasks) if t.group == "engagement"]
        self.register_buffer("engagement_index", torch.tensor(engagement, dtype=torch.long))
        self.shallow_tower: ShallowTower | None = None
        if config.bias.position and engagement and config.bias.method == "shallow_tower":
            b = config.bias
            self.shallow_tower = ShallowTower(b.max_position, encoder.num_devices,
                                              len(engagement), b.embedding_dim, b.hidden_units,
                                              b.missing, b.position_dropout, b.smooth_from)
        self.smoothness = config.bias.smoothness

        self.adversary: PositionAdversary | None = None
        if config.bias.position and config.bias.method == "adversarial":
            self.adversary = PositionAdversary(bottom_dim, config.bias.max_position,
                                               config.bias.adversarial_weight)

    def forward(self, batch: Batch, serving: bool = False,
                embedded: torch.Tensor | None = None) -> RankerOutput:
        """``serving=True`` treats the position as missing, whatever the batch holds;
        ``embedded``: the id embeddings, for a ranker built without its id tables."""
        x = self.inputs(batch, embedded)
        h = self.bottom(x)
        gates = None
        if self.mmoe is not None:
            features, gates = self.mmoe(h, x if self.gate_from_input else h)
        elif self.ple is not None:
            features, gates = self.ple(h, x if self.gate_from_input else h)
        else:
            features = h
        main_logits = self.towers(features).squeeze(-1).transpose(0, 1)  # [N, T]
        logits, bias = main_logits, None
        if self.shallow_tower is not None:
            position = torch.zeros_like(batch.position) if serving else batch.position
            logits, bias = self.add_bias(main_logits, position, batch.device)
        position_logits = self.adversary(h) if self.adversary is not None else None
        return RankerOutput(logits, main_logits, gates, bias, position_logits)

    def add_bias(self, main_logits: torch.Tensor, position: torch.Tensor, device: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The shallow tower's bias for (position, device) added to the engagement logits: what
        a forward pass does, and how evaluation gets the serving logits (position 0) from the
        main logits of a pass made with the logged positions, without a second pass."""
        bias = self.shallow_tower(position, device)  # a table lookup: no autocast, fp32
        return main_logits.index_add(1, self.engagement_index, bias.to(main_logits.dtype)), bias

    @property
    def gate_width(self) -> int:
        """How many experts each task's reported gate weighs (0 for SharedBottom, which has none)."""
        if self.mmoe is not None:
            return self.mmoe.num_experts
        return self.ple.gate_width if self.ple is not None else 0

    def penalty(self) -> torch.Tensor:
        """The regularisation added to the training loss (0 when there is none)."""
        if self.shallow_tower is None or not self.smoothness:
            return torch.zeros(())
        return self.smoothness * self.shallow_tower.roughness()

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-task predictions: probabilities for binary tasks, values for regression."""
        return torch.where(self.is_binary, torch.sigmoid(logits), logits)

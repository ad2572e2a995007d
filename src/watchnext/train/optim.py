"""The one optimiser builder: Adam, plus row-wise Adam on the id tables when they are sparse.

With ``train.sparse_embeddings`` a step touches only the id rows in the batch: the gradient of a
million-row table is a few thousand rows, which is what makes large id spaces trainable and
what DDP then all-reduces. ``torch.optim.Adam`` refuses sparse gradients, so the embedding tables
get ``RowWiseAdam`` (lazy Adam, as ``SparseAdam`` but without its whole-table passes; see
rowwise.py) and everything else Adam. ``CombinedOptimizer`` presents both as one optimiser, so a
checkpoint stores one state.

The id tables (embeddings) take ``train.table_weight_decay`` on top of ``train.weight_decay``: an
L2 pull toward zero for ids with few rows, so per-id embeddings can carry relevance without
memorising the logs. The shallow tower's parameters are a param group of their own, at
``bias.learning_rate_scale`` times the learning rate: the tower starts flat, and a few hundred
steps at the main model's rate do not bring its curve to size before early stopping ends the run
(docs/debiasing.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from watchnext.config import ConfigError, RunConfig
from watchnext.train.rowwise import RowWiseAdam


class CombinedOptimizer:
    """Several optimisers stepping together; their states are numbered one after another."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict[str, Any]:
        state, groups, offset = {}, [], 0
        for opt in self.optimizers:
            sd = opt.state_dict()
            state.update({offset + pid: s for pid, s in sd["state"].items()})
            groups += [{**g, "params": [offset + p for p in g["params"]]} for g in sd["param_groups"]]
            offset += _num_params(opt)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        offset = 0
        for opt in self.optimizers:
            n = _num_params(opt)
            own = {pid - offset: s for pid, s in state_dict["state"].items() if offset <= pid < offset + n}
            opt.load_state_dict({"state": own, "param_groups": opt.state_dict()["param_groups"]})
            offset += n


def _num_params(opt: torch.optim.Optimizer) -> int:
    return sum(len(g["params"]) for g in opt.param_groups)


def sparse_tables(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the model's embedding tables that produce sparse (row-wise) gradients."""
    return [m.weight for m in model.modules()
            if isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse]


def dense_tables(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the model's embedding tables that take dense gradients."""
    return [m.weight for m in model.modules()
            if isinstance(m, nn.Embedding | nn.EmbeddingBag) and not m.sparse]


def shallow_tower_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the model's shallow tower (also inside a DDP wrapper)."""
    return [p for name, p in model.named_parameters() if "shallow_tower" in name.split(".")]


def make_optimizer(model: nn.Module, config: RunConfig,
                   table_optimizer: type[torch.optim.Optimizer] = RowWiseAdam
                   ) -> CombinedOptimizer:
    """Adam over the dense parameters (the shallow tower at its own rate), ``table_optimizer``
    over the sparse embedding tables."""
    t = config.train
    tables = sparse_tables(model)
    if tables and (t.weight_decay or t.table_weight_decay):
        raise ConfigError("train.weight_decay, train.table_weight_decay: not supported with "
                          "sparse embeddings (row-wise updates would have to touch every row)")
    table_ids = {id(p) for p in tables}
    tower_ids = {id(p) for p in shallow_tower_parameters(model)}
    id_tables = {id(p) for p in dense_tables(model)} - tower_ids
    dense = [p for p in model.parameters() if id(p) not in table_ids]
    # groups in the model's parameter order (inputs first, the tower last): checkpoint ids hold
    groups = [
        {"params": [p for p in dense if id(p) in id_tables],
         "weight_decay": t.weight_decay + t.table_weight_decay},
        {"params": [p for p in dense if id(p) not in id_tables | tower_ids]},
        {"params": [p for p in dense if id(p) in tower_ids],
         "lr": t.learning_rate * config.bias.learning_rate_scale},
    ]
    groups = [g for g in groups if g["params"]]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.Adam(groups, lr=t.learning_rate, weight_decay=t.weight_decay)]
    if tables:
        optimizers.append(table_optimizer(tables, lr=t.learning_rate))
    return CombinedOptimizer(optimizers)

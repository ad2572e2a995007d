"""make_optimizer's param groups: the shallow tower's own rate, weight decay on id tables."""

import pytest
import torch

from watchnext.config import ConfigError
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.ranker import MultitaskRanker
from watchnext.train.optim import make_optimizer


def _groups(config, impressions):
    model = MultitaskRanker(config, FeatureEncoder(config).fit(impressions))
    (adam,) = make_optimizer(model, config).optimizers
    return model, adam.param_groups


def test_tower_rate_and_table_decay_go_to_their_own_parameters(config, impressions):
    config = config.replace(bias={"learning_rate_scale": 10.0},
                            train={"learning_rate": 0.002, "weight_decay": 1e-6,
                                   "table_weight_decay": 1e-4})
    model, groups = _groups(config, impressions)
    by_param = {id(p): g for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        group = by_param[id(p)]
        tower = name.startswith("shallow_tower.")
        table = name.startswith("inputs.")  # embeddings and bags
        assert group["lr"] == pytest.approx(0.02 if tower else 0.002), name
        assert group["weight_decay"] == pytest.approx(1e-6 + 1e-4 if table else 1e-6), name
    # the groups list the parameters in the model's order: saved optimiser state ids still match
    assert [id(p) for g in groups for p in g["params"]] == [id(p) for p in model.parameters()]


def test_table_decay_refused_with_sparse_tables(config):
    with pytest.raises(ConfigError, match="train.sparse_embeddings"):
        config.replace(train={"table_weight_decay": 1e-4, "sparse_embeddings": True})


def test_table_decay_shrinks_only_the_tables(config, impressions):
    config = config.replace(train={"table_weight_decay": 0.5, "learning_rate": 0.01})
    model, _ = _groups(config, impressions)
    opt = make_optimizer(model, config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(5):  # no data gradient at all: only the decay moves anything
        opt.zero_grad()
        sum((p * 0).sum() for p in model.parameters()).backward()
        opt.step()
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (name.startswith("inputs.") and before[name].abs().sum() > 0), name

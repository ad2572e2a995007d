import dataclasses

import torch

from tests.conftest import small_config_dict
from watchnext.config import config_from_dict
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.cost import match_cost, multiplications
from watchnext.model.ranker import MultitaskRanker


def _model(config, impressions):
    torch.manual_seed(0)
    encoder = FeatureEncoder(config).fit(impressions)
    model = MultitaskRanker(config, encoder)
    if model.shallow_tower is not None:  # it starts flat (zero output layer): give it a curve
        torch.nn.init.normal_(model.shallow_tower.out.weight)
    return model, encoder.transform(impressions)


def test_shallow_tower_changes_engagement_logits_only(config, impressions):
    model, batch = _model(config, impressions)
    model.eval()
    out = model(batch)
    engagement = torch.tensor([t.group == "engagement" for t in config.tasks])
    diff = (out.logits - out.main_logits).abs()
    assert (diff[:, ~engagement] == 0).all()
    assert (diff[:, engagement] > 0).any()
    moved = model(dataclasses.replace(batch, position=(batch.position % 5) + 1))
    changed = (moved.logits - out.logits).abs().amax(0)
    assert changed[~engagement].max() == 0 and changed[engagement].min() > 0


def test_serving_scores_do_not_depend_on_position(config, impressions):
    model, batch = _model(config, impressions)
    model.eval()
    a = model(batch, serving=True).logits
    shuffled = dataclasses.replace(batch, position=torch.randint(1, 9, batch.position.shape))
    b = model(shuffled, serving=True).logits
    torch.testing.assert_close(a, b)
    assert not torch.allclose(model(batch).logits, model(shuffled).logits)


def test_serving_bias_is_the_missing_position_bias_per_device(config, impressions):
    model, batch = _model(config, impressions)
    model.eval()
    out = model(batch, serving=True)
    table = model.shallow_tower.bias_table()  # [P+1, D, n_engagement]
    torch.testing.assert_close(out.bias, table[0, batch.device])


def test_position_dropout_only_in_training(config, impressions):
    model, batch = _model(config.replace(bias={"missing": "dropout", "position_dropout": 0.5}), impressions)
    model.train()
    torch.manual_seed(1)
    a = model.shallow_tower(batch.position, batch.device)
    b = model.shallow_tower(torch.zeros_like(batch.position), batch.device)
    same_as_missing = (a - b).abs().amax(1) < 1e-7
    assert 0.4 < same_as_missing.float().mean().item() < 0.6
    model.eval()
    assert not torch.allclose(model.shallow_tower(batch.position, batch.device), b)


def test_no_shallow_tower_without_bias_features(impressions):
    raw = small_config_dict()
    raw["bias"] = {}
    model, batch = _model(config_from_dict(raw), impressions)
    out = model(batch)
    assert model.shallow_tower is None and torch.equal(out.logits, out.main_logits)


def test_multiplications_count_by_hand(config, impressions):
    model, _ = _model(config, impressions)
    d_in = model.inputs.out_dim  # 4 + 4 + 2 + 3 + 1
    assert d_in == 14
    expected = {
        "bottom": 14 * 16, "experts": 4 * 16 * 8, "gates": 16 * 3 * 4, "mixing": 3 * 4 * 8,
        "towers": 3 * (8 * 4 + 4 * 1),
    }
    cost = multiplications(model)
    assert {k: cost[k] for k in expected} == expected
    assert cost["serving"] == sum(expected.values())
    assert cost["shallow_tower"] == 3 * 8 * 16 + 16 * 2


def test_match_cost_hits_the_target(config, impressions):
    encoder = FeatureEncoder(config).fit(impressions)
    target = multiplications(MultitaskRanker(config.replace(model={"num_experts": 8}), encoder))["serving"]
    shared = config.replace(model={"kind": "shared_bottom", "bottom_units": [16, 8]})
    matched = match_cost(shared, encoder, target)
    got = multiplications(MultitaskRanker(matched, encoder))["serving"]
    assert abs(got - target) / target < 0.02


def test_gate_input_can_be_the_raw_input(config, impressions):
    model, batch = _model(config.replace(model={"gate_input": "input"}), impressions)
    assert model.mmoe.gates.in_features == model.inputs.out_dim
    assert model(batch).gates.shape == (len(batch), 3, 4)

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
    assert cost["shallow_tower"] == 3 * 8 * 2  # embeddings straight to the 2 engagement outputs


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


PLE = {"kind": "ple", "ple_layers": 2, "task_experts": 1, "shared_experts": 2}


def test_ple_multiplications_count_by_hand(config, impressions):
    model, batch = _model(config.replace(model=PLE), impressions)
    assert model.mmoe is None and model.gate_width == 3
    experts, own_and_shared = 3 * 1 + 2, 1 + 2  # T m_t + m_s; per task gate m_t + m_s
    expected = {
        "bottom": 14 * 16,
        "experts": experts * 16 * 8 + experts * 8 * 8,  # layer 1 reads h (16), layer 2 reads q (8)
        "gates": 16 * 3 * own_and_shared + 16 * experts + 8 * 3 * own_and_shared,  # no shared gate in 2
        "mixing": (3 * own_and_shared * 8 + experts * 8) + 3 * own_and_shared * 8,
        "towers": 3 * (8 * 4 + 4 * 1),
    }
    cost = multiplications(model)
    assert {k: cost[k] for k in expected} == expected
    assert cost["serving"] == sum(expected.values())
    assert model(batch).gates.shape == (len(batch), 3, own_and_shared)


def test_match_cost_resizes_ple_experts_to_the_mmoe_cost(config, impressions):
    encoder = FeatureEncoder(config).fit(impressions)
    mmoe = config.replace(model={"num_experts": 8, "expert_units": [32]})
    target = multiplications(MultitaskRanker(mmoe, encoder))["serving"]
    matched = match_cost(config.replace(model=PLE), encoder, target)
    width = matched.model.expert_units[-1]
    assert matched.model.kind == "ple" and width != config.model.expert_units[-1]

    def error(w):
        resized = matched.replace(model={"expert_units": [w]})
        return abs(multiplications(MultitaskRanker(resized, encoder))["serving"] - target)

    assert error(width) / target < 0.02
    assert error(width) <= min(error(width - 1), error(width + 1))  # the closest width


def test_ple_gates_can_read_the_raw_input(config, impressions):
    model, batch = _model(config.replace(model={**PLE, "gate_input": "input"}), impressions)
    first, second = model.ple.layers
    assert first.task_gates.weights[0].shape[1] == model.inputs.out_dim
    assert first.shared_gate.in_features == model.inputs.out_dim
    assert second.task_gates.weights[0].shape[1] == 8  # later layers gate on the previous layer
    assert model(batch).gates.shape == (len(batch), 3, 3)


def test_ple_without_a_shared_bottom_puts_experts_on_the_input(config, impressions):
    model, batch = _model(config.replace(model={**PLE, "bottom_units": []}), impressions)
    assert model.ple.layers[0].experts.weights[0].shape[1] == model.inputs.out_dim
    assert multiplications(model)["bottom"] == 0
    assert model(batch).logits.shape == (len(batch), 3)

"""The adversarial-loss baseline: gradient reversal, the config switch, and what it leaves alone."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from tests.conftest import make_impressions, small_config_dict
from watchnext.api import Ranker
from watchnext.config import ConfigError, config_from_dict
from watchnext.model.adversarial import PositionAdversary, position_loss, reverse_gradient


def test_gradient_reversal_is_identity_forward_and_negated_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))


def test_adversary_learns_position_while_pushing_the_input_the_other_way():
    torch.manual_seed(0)
    h = torch.randn(256, 4, requires_grad=True)
    position = (h[:, 0] > 0).long() + 1  # the position is readable from h
    adversary = PositionAdversary(4, max_position=3, weight=1.0)
    loss = position_loss(adversary(h), position)
    loss.backward()
    head_step = [p.grad.clone() for p in adversary.parameters()]
    plain = PositionAdversary(4, max_position=3, weight=1.0)
    plain.load_state_dict(adversary.state_dict())
    h2 = h.detach().clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(plain.net(h2), position).backward()
    assert all(torch.allclose(a, p.grad) for a, p in zip(head_step, plain.parameters(), strict=True))
    assert torch.allclose(h.grad, -h2.grad)


def test_missing_positions_are_not_targets():
    logits = torch.randn(4, 3, requires_grad=True)
    assert position_loss(logits, torch.zeros(4, dtype=torch.long)).item() == 0.0
    full = position_loss(logits, torch.tensor([1, 2, 0, 0]))
    assert full.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits[:2], torch.tensor([1, 2])).item())


def _config(**bias):
    raw = small_config_dict()
    raw["bias"] = {**raw["bias"], **bias}
    return config_from_dict(raw)


def test_default_config_has_no_adversary_and_the_shallow_tower():
    ranker = Ranker(_config()).fit(make_impressions(600))
    assert ranker.model.adversary is None and ranker.model.shallow_tower is not None
    assert _config().bias.method == "shallow_tower"


def test_adversarial_method_trains_the_head_and_serving_ignores_position():
    table = make_impressions(1500)
    ranker = Ranker(_config(method="adversarial", device="", adversarial_weight=0.5))
    ranker._build(table)
    assert ranker.model.shallow_tower is None and ranker.model.adversary is not None
    before = [p.detach().clone() for p in ranker.model.adversary.parameters()]
    ranker.fit(table)  # the same seed builds the same initial weights
    after = list(ranker.model.adversary.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    moved = table.set_column(table.column_names.index("position"), "position",
                             pa.array([1] * table.num_rows))
    assert (ranker.predict(table) == ranker.predict(moved)).all()


@pytest.mark.parametrize("bias, key", [
    ({"method": "tower"}, "bias.method"),
    ({"method": "adversarial", "position": "", "device": ""}, "bias.method"),
    ({"adversarial_weight": -1.0}, "bias.adversarial_weight"),
])
def test_bad_adversarial_settings_name_the_key(bias, key):
    with pytest.raises(ConfigError, match=rf"^{key}:"):
        _config(**bias)

"""Speed paths compute the same model: batched experts, no shared bottom, bf16 training, config keys."""

import pytest
import torch

from tests.conftest import small_config_dict
from watchnext.api import Ranker
from watchnext.config import ConfigError, config_from_dict
from watchnext.model.cost import multiplications
from watchnext.model.layers import GroupedMLP


def _loop(mlp: GroupedMLP, x: torch.Tensor) -> torch.Tensor:
    """Reference: each member as its own plain MLP."""
    outs = []
    last = len(mlp.weights) - 1
    for g in range(mlp.groups):
        h = x if x.dim() == 2 else x[g]
        for i, (w, b) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
            h = h @ w[g] + b[g]
            if i < last or mlp.final_relu:
                h = torch.relu(h)
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize("shared_input", [True, False])
@pytest.mark.parametrize("in_dim", [13, 32])
def test_grouped_mlp_equals_a_loop_of_mlps(shared_input, in_dim):
    torch.manual_seed(0)
    mlp = GroupedMLP(3, in_dim, (8, 5), final_relu=False)
    with torch.no_grad():
        for b in mlp.biases:
            b.normal_()
    x = torch.randn(10, in_dim) if shared_input else torch.randn(3, 10, in_dim)
    x.requires_grad_(True)
    out = mlp(x)
    ref = _loop(mlp, x)
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), [x, *mlp.parameters()])
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *mlp.parameters()])
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_no_shared_bottom_puts_experts_and_gates_on_the_input(impressions):
    cfg = config_from_dict(small_config_dict(bottom_units=[], gate_input="input"))
    ranker = Ranker(cfg.replace(train={"max_epochs": 1})).fit(impressions)
    model = ranker.model
    assert not any(isinstance(m, torch.nn.Linear) for m in model.bottom.modules())
    assert model.mmoe.experts.weights[0].shape[1] == model.inputs.out_dim
    assert model.mmoe.gates.in_features == model.inputs.out_dim
    assert multiplications(model)["bottom"] == 0
    assert ranker.predict(impressions).shape == (len(impressions), len(cfg.tasks))


@pytest.mark.parametrize(("section", "values", "key"), [
    ("model", {"kind": "shared_bottom", "bottom_units": []}, "model.bottom_units"),
    ("model", {"expert_units": []}, "model.expert_units"),
    ("train", {"precision": "fp16"}, "train.precision"),
    ("train", {"sparse_embeddings": True, "weight_decay": 0.01}, "train.sparse_embeddings"),
    ("train", {"compile": "yes"}, "train.compile"),
    ("train", {"retain_freed_memory": 1}, "train.retain_freed_memory"),
])
def test_speed_keys_are_validated_by_name(section, values, key):
    raw = small_config_dict()
    raw[section] = {**raw[section], **values}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict(raw)


def test_bf16_training_stays_close_to_fp32(impressions):
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = config_from_dict(small_config_dict()).replace(
            train={"precision": precision, "max_epochs": 2})
        ranker = Ranker(cfg).fit(impressions)
        losses[precision] = [h["total"] for h in ranker.history[0].train]
        assert next(ranker.model.parameters()).dtype == torch.float32  # fp32 master weights
    for fp32, bf16 in zip(losses["fp32"], losses["bf16"], strict=True):
        assert bf16 == pytest.approx(fp32, rel=0.03)

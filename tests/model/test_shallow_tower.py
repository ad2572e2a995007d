"""The shallow tower's guarantees: no leak of position into the main model, the serving value's
definition, a flat start, and the smoothness penalty."""

import pytest
import torch

from watchnext.config import BiasSpec
from watchnext.data.encoder import FeatureEncoder
from watchnext.model.ranker import MultitaskRanker
from watchnext.model.shallow_tower import ShallowTower
from watchnext.train.losses import per_task_losses


def _model(config, impressions, **bias):
    config = config.replace(bias=bias, model={"gate_dropout": 0.0})  # no other randomness
    torch.manual_seed(0)
    encoder = FeatureEncoder(config).fit(impressions)
    model = MultitaskRanker(config, encoder)
    give_curve(model.shallow_tower)
    return model, encoder.transform(impressions)


def _main_gradients(model, batch, training: bool) -> list[torch.Tensor]:
    model.train(training)
    model.zero_grad()
    out = model(batch)
    per_task_losses(out.logits, batch.labels, model.is_binary).sum().backward()
    return [p.grad.clone() for name, p in model.named_parameters()
            if not name.startswith("shallow_tower.")]


@pytest.mark.parametrize("missing, leaks", [("exposure_mean", False), ("dropout", True)])
def test_training_rows_move_the_main_model_as_with_their_logged_position(
        config, impressions, missing, leaks):
    # exposure_mean: no row hides its position, so the main model's gradient in training equals
    # its gradient with every logged position in place. Dropout (the paper) changes it: the rows
    # whose position was hidden push the main model to explain what the slot caused.
    model, batch = _model(config, impressions, missing=missing,
                          position_dropout=0.3 if missing == "dropout" else 0.0)
    logged = _main_gradients(model, batch, training=False)
    torch.manual_seed(1)
    trained = _main_gradients(model, batch, training=True)
    same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(logged, trained, strict=True))
    assert same != leaks


def test_serving_value_is_the_exposure_weighted_mean_of_the_positions(config, impressions):
    model, batch = _model(config, impressions)
    tower = model.shallow_tower
    model.train()
    model(batch)
    model(batch.slice(0, 100))
    counts = torch.zeros_like(tower.exposure)
    for b in (batch, batch.slice(0, 100)):
        counts.index_put_((b.position, b.device), torch.ones(len(b)), accumulate=True)
    torch.testing.assert_close(tower.exposure, counts)
    table = tower.bias_table()
    weights = counts[1:] / counts[1:].sum(0)
    expected = (weights.unsqueeze(-1) * table[1:]).nan_to_num().sum(0)
    seen = counts[1:].sum(0) > 0
    torch.testing.assert_close(table[0, seen], expected[seen])
    torch.testing.assert_close(table[0, ~seen], table[1:, ~seen].mean(0))  # never seen: uniform
    model.eval()
    served = model(batch, serving=True).bias
    torch.testing.assert_close(served, table[0, batch.device])
    model(batch)  # evaluation does not count exposure
    torch.testing.assert_close(tower.exposure, counts)


def test_exposure_is_saved_with_the_weights(config, impressions):
    model, batch = _model(config, impressions)
    model.train()
    model(batch)
    state = model.state_dict()
    assert "shallow_tower.exposure" in state
    fresh, _ = _model(config, impressions)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.shallow_tower.bias_table(), model.shallow_tower.bias_table())


def give_curve(tower: ShallowTower) -> None:
    """A random curve instead of the flat start (the table's cells or the network's output)."""
    torch.nn.init.normal_(tower.cells if tower.cells is not None else tower.out.weight)


@pytest.mark.parametrize("hidden_units", [(), (16,)])
def test_tower_starts_flat(hidden_units):
    tower = ShallowTower(max_position=10, num_devices=3, num_outputs=2, hidden_units=hidden_units)
    assert torch.count_nonzero(tower.bias_table()) == 0


def test_default_tower_is_a_table_whose_every_cell_learns_from_the_first_step():
    # The network's curve is a product of parameters starting at zero or at random: its
    # per-device differences come late. The table's gradient is each cell's own, from step one.
    tower = ShallowTower(max_position=4, num_devices=3, num_outputs=1)
    position = torch.arange(1, 5).repeat(3)
    device = torch.arange(3).repeat_interleave(4)
    target = torch.randn(12)
    (tower(position, device).squeeze(-1) - target).pow(2).sum().backward()
    assert [name for name, _ in tower.named_parameters()] == ["cells"]
    torch.testing.assert_close(tower.cells.grad[position, device, 0], -2 * target)


def _with_table(values: torch.Tensor, smooth_from: int = 1) -> ShallowTower:
    tower = ShallowTower(max_position=len(values), num_devices=1, num_outputs=1,
                         smooth_from=smooth_from)
    full = torch.cat([values.mean().view(1), values]).view(-1, 1, 1)
    tower.table = lambda **_: full  # the curve under test instead of the tower's
    return tower


def test_roughness_is_zero_for_a_power_law_and_grows_with_a_bump():
    p = torch.arange(1, 11, dtype=torch.float32)
    power_law = -0.9 * torch.log(p)
    assert _with_table(power_law).roughness().item() == pytest.approx(0.0, abs=1e-8)
    bumped = power_law.clone()
    bumped[5] += 0.3
    small, large = _with_table(power_law + 0.1 * (bumped - power_law)), _with_table(bumped)
    assert 0 < small.roughness().item() < large.roughness().item()


def test_first_step_is_free_from_smooth_from_2():
    p = torch.arange(1, 11, dtype=torch.float32)
    steeper_top = -0.9 * torch.log(p)
    steeper_top[0] += 0.4  # position 1 further above the rest than the power law says
    assert _with_table(steeper_top, smooth_from=2).roughness().item() == pytest.approx(0.0, abs=1e-8)
    assert _with_table(steeper_top).roughness().item() > 0.1


def test_penalty_is_smoothness_times_roughness_and_trains_the_tower_only(config, impressions):
    model, _ = _model(config, impressions, smoothness=0.5)
    penalty = model.penalty()
    assert penalty.item() == pytest.approx(0.5 * model.shallow_tower.roughness().item())
    assert penalty.item() > 0
    penalty.backward()
    moved = {name for name, p in model.named_parameters()
             if p.grad is not None and p.grad.abs().sum() > 0}
    assert moved and all(name.startswith("shallow_tower.") for name in moved)
    assert "shallow_tower.device_embedding.weight" not in moved  # a shift the penalty cannot see
    off, _ = _model(config, impressions, smoothness=0.0)
    assert off.penalty().item() == 0.0


# The additive-logit curve (relative to position 1) of the simulator's default world, world seed 1,
# phone / desktop / tablet / tv, from benchmarks/bias_recovery.py: steeper on the first step than
# a power law, as the additive description of a multiplicative click model is.
ADDITIVE_TRUTH = torch.tensor([
    [0.0, -0.906, -1.349, -1.644, -1.867, -2.046, -2.192, -2.319, -2.427, -2.526],
    [0.0, -0.609, -0.921, -1.129, -1.283, -1.411, -1.513, -1.601, -1.678, -1.745],
    [0.0, -0.768, -1.149, -1.401, -1.593, -1.746, -1.873, -1.978, -2.074, -2.157],
    [0.0, -1.106, -1.632, -1.986, -2.254, -2.469, -2.647, -2.795, -2.929, -3.043]],
    dtype=torch.float64)


def _penalised_fit_error(smoothness: float, smooth_from: int) -> torch.Tensor:
    """Per device, max |fitted - true| of the curve that minimises the expected click loss of
    ``sigmoid(relevance + b[p, d])`` (clicks drawn from the true curve, device shares and a spread
    of relevance as in the simulator) plus the smoothness penalty: the penalty's bias alone,
    with no sampling noise."""
    tower = ShallowTower(max_position=10, num_devices=4, num_outputs=1, smooth_from=smooth_from)
    curve = torch.zeros(10, 4, 1, dtype=torch.float64, requires_grad=True)
    tower.table = lambda **_: torch.cat([curve[:1], curve])  # a free curve
    relevance = torch.tensor([-2.5, -1.5, -0.5, 0.5], dtype=torch.float64)
    clicks = torch.sigmoid(ADDITIVE_TRUTH.T.unsqueeze(-1) + relevance)  # [P, D, relevance]
    share = torch.tensor([0.4, 0.2, 0.2, 0.2], dtype=torch.float64).view(1, 4, 1) / 10 / 4
    opt = torch.optim.LBFGS([curve], max_iter=500, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-14)

    def loss() -> torch.Tensor:
        opt.zero_grad()
        z = curve + relevance
        value = (share * (torch.nn.functional.softplus(z) - clicks * z)).sum() \
            + smoothness * tower.roughness()
        value.backward()
        return value

    opt.step(loss)
    fitted = curve.detach()[:, :, 0].T
    return (fitted - fitted[:, :1] - ADDITIVE_TRUTH).abs().max(1).values


def test_default_smoothing_keeps_the_size_of_the_additive_curve():
    # The penalty is quadratic in the curve: where the curve bends, it pulls the whole curve
    # toward flat. Smoothing from the first step shrinks the steepest device's curve by more
    # than 0.1 logit; the default (first step free) keeps every device within 0.05.
    default = BiasSpec()
    assert _penalised_fit_error(default.smoothness, default.smooth_from).max() <= 0.05
    assert _penalised_fit_error(default.smoothness, 1).max() > 0.1

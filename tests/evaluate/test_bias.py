"""The learned-bias export: keys are positions 1..P, the serving value apart, trained devices only."""

import json

import pytest
import torch

from watchnext.api import Ranker
from watchnext.evaluate import tables
from watchnext.evaluate.bias import ALL_DEVICES, LearnedBias, learned_bias, to_json


@pytest.fixture
def ranker(config, impressions):
    return Ranker(config.replace(train={"max_epochs": 1})).fit(impressions)


def test_keys_are_positions_and_trained_devices(ranker, config):
    bias = learned_bias(ranker.model, ranker.encoder)
    assert set(bias) == {"click", "watch"}  # engagement tasks only
    click = bias["click"]
    assert set(click.curves) == set(click.serving) == {"phone", "tablet", "tv"}
    assert list(click.curves["tv"]) == list(range(1, config.bias.max_position + 1))


def test_values_are_what_the_model_adds(ranker, impressions):
    """Curve at position p = the bias of a logged row at p; serving = the bias at serving."""
    batch = ranker.encode(impressions.slice(0, 50))
    ranker.model.eval()
    with torch.no_grad():
        logged, served = ranker.model(batch).bias, ranker.model(batch, serving=True).bias
    bias = ranker.learned_bias()["click"]
    names = {i + 2: name for i, name in enumerate(ranker.encoder.vocabularies["__device__"].values)}
    for row in range(50):
        device, position = names[int(batch.device[row])], int(batch.position[row])
        assert bias.curves[device][position] == pytest.approx(float(logged[row, 0]), abs=1e-4)
        assert bias.serving[device] == pytest.approx(float(served[row, 0]), abs=1e-4)


def test_no_device_column_names_the_single_device_all(config, impressions):
    ranker = Ranker(config.replace(bias={"device": ""}, train={"max_epochs": 1})).fit(impressions)
    bias = ranker.learned_bias()["click"]
    assert set(bias.curves) == set(bias.serving) == {ALL_DEVICES}
    header, rows = tables.bias_rows(ranker.evaluate(impressions))
    assert header == ["position", "click all", "watch all"]
    assert [r[0] for r in rows] == [*map(str, range(1, 9)), "serving"]


def test_json_form_round_trips(ranker):
    bias = ranker.learned_bias()
    raw = json.loads(json.dumps(to_json(bias)))
    assert set(raw["click"]) == {"curves", "serving"}
    assert list(raw["click"]["curves"]["phone"])[0] == "1"
    assert LearnedBias.from_json(raw["click"]) == bias["click"]


def test_no_tower_no_export(config, impressions):
    ranker = Ranker(config.replace(bias={"position": "", "device": ""},
                                   train={"max_epochs": 1})).fit(impressions)
    assert ranker.learned_bias() == {}
    assert tables.bias_rows(ranker.evaluate(impressions)) == ([], [])

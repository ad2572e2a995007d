import json
import math
from dataclasses import dataclass, field

import pytest

from watchnext.api import Ranker
from watchnext.evaluate import schema


@dataclass
class FakeHistory:
    train: list = field(default_factory=list)
    valid: list = field(default_factory=list)
    best_epoch: int = -1


def test_training_names_the_kept_epoch_one_based():
    history = FakeHistory(train=[{"total": 1.0}, {"total": 0.9}, {"total": 0.8}],
                          valid=[{"total": 0.5}, {"total": 0.4}, {"total": 0.41}], best_epoch=1)
    training = schema.training([history], max_epochs=5, seconds=2.0)
    assert training.kept_epoch == 2 and training.epochs_run == 3 and training.stopped_early
    assert [e.valid_loss["total"] for e in training.history] == [0.5, 0.4, 0.41]
    assert not schema.training([history], max_epochs=3).stopped_early


def test_to_json_rounds_to_six_digits_and_writes_nan_as_null():
    model = schema.ModelReport(name="m", kind="mmoe", tasks=[], devices=[], cost={"serving": 1},
                               learned_bias={}, training=schema.Training(
                                   kept_epoch=1, epochs_run=1, stopped_early=False, seconds=None,
                                   history=[schema.Epoch(1, {"total": 0.30634567891})]))
    model.evaluations["test"] = schema.Evaluation("test split", 3, {"click": {"auc": math.nan}},
                                                  None, {"k": 10}, {})
    data = schema.Report("train", {"m": model}).to_json()
    text = json.dumps(data, allow_nan=False)  # strict JSON: would raise on NaN
    assert data["models"]["m"]["training"]["history"][0]["train_loss"]["total"] == 0.306346
    assert data["models"]["m"]["evaluations"]["test"]["serving"]["click"]["auc"] is None
    again = schema.Report.from_json(json.loads(text))
    assert again.models["m"].training.history[0].train_loss["total"] == 0.306346
    assert again.to_json() == data


@pytest.mark.parametrize(("data", "message"), [
    ({"valid": {}, "test": {}}, "schema: expected 'watchnext.report/1'"),
    ({"schema": schema.SCHEMA, "command": "train"}, "models: missing"),
    ({"schema": schema.SCHEMA, "command": "train", "models": {"m": {"name": "m"}}},
     "models.m.evaluations: missing"),
    ({"schema": schema.SCHEMA, "command": "train", "models": []}, "models: expected dict"),
])
def test_from_json_names_what_is_wrong(data, message):
    with pytest.raises(schema.ReportError, match=message):
        schema.Report.from_json(data)


def test_model_report_needs_no_data(config, impressions):
    ranker = Ranker(config.replace(train={"max_epochs": 2})).fit(impressions, impressions)
    model = ranker.model_report()
    assert model.evaluations == {} and model.cost["serving"] > 0
    assert [t["name"] for t in model.tasks] == ["click", "watch", "like"]
    assert set(model.learned_bias) == {"click", "watch"}
    assert model.training.kept_epoch in (1, 2) and len(model.training.history) <= 2

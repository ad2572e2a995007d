"""A model with the shallow tower over position x device: the request's device reaches the
model (through the ONNX graph as well) while the position stays missing."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from watchnext.serve import ModelRegistry, ServingModel, create_app
from watchnext.serve.backends import PARITY_TOLERANCE, max_score_difference
from watchnext.serve.model_dir import parity_inputs, read_manifest


@pytest.fixture(scope="module")
def device_model(device_model_dir):
    return ServingModel.load(device_model_dir, backend="onnx")


def test_device_is_a_request_input(device_model):
    assert device_model.store.roles["device"] == "device"
    assert "pos" not in device_model.store.roles  # the position is never served
    ids = device_model.store.item_ids[:20]
    android = device_model.score("u", None, "android", ids)
    ios = device_model.score("u", None, "ios", ids)
    unknown = device_model.score("u", None, "tv", ids)
    by = [{i.video_id: i.predictions["click"] for i in r.items} for r in (android, ios, unknown)]
    assert any(abs(by[0][v] - by[1][v]) > 1e-6 for v in ids)
    assert all(np.isfinite(list(b.values())).all() for b in by)
    # satisfaction tasks do not see the shallow tower: the device does not move them
    like = [{i.video_id: i.predictions["like"] for i in r.items} for r in (android, ios)]
    assert all(abs(like[0][v] - like[1][v]) < 1e-6 for v in ids)


def test_onnx_parity_with_a_device_input(device_model):
    from watchnext.serve.backends import ServingGraph, TorchBackend
    from watchnext.serve.model_dir import load_ranker

    assert read_manifest(device_model.directory)["onnx"]["exported"]
    assert "device" in device_model.backend.inputs
    ranker = load_ranker(device_model.directory)
    torch_backend = TorchBackend(ServingGraph(ranker.model, ranker.config.tasks))
    inputs = list(parity_inputs(device_model.store, 300))
    inputs[3] = np.resize(np.array([0, 1, 2, 3], np.int64), len(inputs[3]))  # missing/OOV/known
    assert max_score_difference(torch_backend, device_model.backend, tuple(inputs)) \
        <= PARITY_TOLERANCE


@pytest.fixture(scope="module")
def client(device_model_dir):
    registry = ModelRegistry(device_model_dir, backend="torch")
    registry.load()
    return TestClient(create_app(registry))


def test_the_api_takes_only_devices_the_model_knows(client):
    assert sorted(client.get("/v1/model").json()["devices"]) == ["android", "ios"]
    for path, body in (("/v1/watch-next", {"k": 3}), ("/v1/score", {"candidates": ["a", 1]})):
        assert client.post(path, json={**body, "device": "ios"}).status_code == 200
        assert client.post(path, json=body).status_code == 200  # absent: missing
        refused = client.post(path, json={**body, "device": "tv"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["body", "device"]
        assert "'android'" in refused.json()["message"] and "'ios'" in refused.json()["message"]


def test_the_openapi_document_lists_the_devices(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("WatchNextRequest", "ScoreRequest"):
        choices = schemas[name]["properties"]["device"]["anyOf"]
        assert {"type": "null"} in choices and len(choices) == 2
        enum = next(c for c in choices if c != {"type": "null"})
        assert enum["type"] == "string" and sorted(enum["enum"]) == ["android", "ios"]

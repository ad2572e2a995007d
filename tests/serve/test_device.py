"""A model with the shallow tower over position x device: the request's device reaches the
model (through the ONNX graph as well) while the position stays missing."""

import numpy as np
import pyarrow as pa
import pytest

from watchnext.serve import ServingModel
from watchnext.serve.backends import PARITY_TOLERANCE, max_score_difference
from watchnext.serve.model_dir import parity_inputs, read_manifest
from watchnext.workflows import build_service

from .conftest import tiny_config


@pytest.fixture(scope="module")
def device_model(tmp_path_factory, logs):
    rng = np.random.default_rng(0)
    table = logs.slice(0, 3000)
    table = table.append_column("pos", pa.array(rng.integers(1, 6, table.num_rows)))
    table = table.append_column("device", pa.array(rng.choice(["android", "ios"],
                                                              table.num_rows)))
    cfg = tiny_config().replace(bias={"position": "pos", "device": "device", "max_position": 5})
    path = build_service(cfg, table, tmp_path_factory.mktemp("dev") / "v1", max_candidates=40,
                         log=lambda _m: None)
    return ServingModel.load(path, backend="onnx")


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

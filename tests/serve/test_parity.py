"""ONNX Runtime and PyTorch must agree on the served scores (max abs difference <= 1e-5)."""

import datetime as dt

import numpy as np
import pytest
import torch

from watchnext.api import Ranker
from watchnext.model.score import combined_score
from watchnext.serve.backends import (
    PARITY_TOLERANCE,
    OnnxBackend,
    ServingGraph,
    TorchBackend,
    max_score_difference,
)
from watchnext.serve.model_dir import ONNX_FILE, parity_inputs, read_manifest

WHEN = dt.datetime(2022, 4, 20, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def backends(model_dir):
    ranker = Ranker.load(model_dir)
    graph = ServingGraph(ranker.model, ranker.config.tasks)
    return ranker, TorchBackend(graph), OnnxBackend(model_dir / ONNX_FILE)


def test_build_recorded_parity(model_dir):
    onnx = read_manifest(model_dir)["onnx"]
    assert onnx["exported"] and onnx["parity_max_abs_diff"] <= PARITY_TOLERANCE


def test_onnx_matches_torch_on_real_rows(backends, serving):
    _, torch_backend, onnx_backend = backends
    inputs = parity_inputs(serving.store, 1000)
    assert len(inputs[0]) >= 500
    assert max_score_difference(torch_backend, onnx_backend, inputs) <= PARITY_TOLERANCE
    p_torch, _ = torch_backend.run(*inputs)
    p_onnx, _ = onnx_backend.run(*inputs)
    assert np.abs(p_torch - p_onnx).max() <= PARITY_TOLERANCE


def test_onnx_matches_torch_on_cold_start_rows(backends, serving):
    _, torch_backend, onnx_backend = backends
    enc = serving.store.encode("stranger", ["unknown-1", "unknown-2", *serving.store.item_ids[:3]],
                               "tv", WHEN)
    inputs = (enc.categorical, enc.dense, enc.multi, enc.device)
    assert max_score_difference(torch_backend, onnx_backend, inputs) <= PARITY_TOLERANCE


def test_a_different_model_would_fail_the_check(backends, serving):
    """The parity check can fail: perturbed weights give visibly different scores."""
    ranker, torch_backend, onnx_backend = backends
    perturbed = Ranker.load(serving.directory)
    with torch.no_grad():
        for p in perturbed.model.parameters():
            p.add_(0.5)
    other = TorchBackend(ServingGraph(perturbed.model, perturbed.config.tasks))
    inputs = parity_inputs(serving.store, 200)
    assert max_score_difference(other, onnx_backend, inputs) > PARITY_TOLERANCE


def test_serving_graph_equals_the_core_api(backends, serving):
    """The served score is the core's combined_score of Ranker.predict in serving mode."""
    ranker, torch_backend, _ = backends
    items = serving.store.item_ids[:64]
    user = next(iter(serving.store.user_index))
    table = serving.store.raw_table(user, items, None, WHEN)
    expected = combined_score(torch.from_numpy(ranker.predict(table)), ranker.config.tasks)
    enc = serving.store.encode(user, items, None, WHEN)
    _, score = torch_backend.run(enc.categorical, enc.dense, enc.multi, enc.device)
    assert np.allclose(score, expected.numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("model", [
    {"kind": "mmoe", "gate_input": "bottom"},
    {"kind": "mmoe", "gate_input": "input", "expert_units": [16, 8], "bottom_units": [32, 24]},
    {"kind": "shared_bottom", "bottom_units": [32, 16]},
    {"kind": "ple", "gate_input": "input", "ple_layers": 2, "task_experts": 1, "shared_experts": 2},
])
def test_export_graph_equals_the_reference(tmp_path, logs, model):
    """The re-expressed export graph computes exactly the model's own forward."""
    from watchnext.retrieve.log import LogColumns
    from watchnext.serve.backends import ExportGraph, example_inputs, export_onnx
    from watchnext.serve.features import FeatureStore

    from .conftest import tiny_config

    ranker = Ranker(tiny_config().replace(model=model))
    # Two days: on one day every history feature is constant (its prior), and the store serves
    # history as of the next day, which a zero-variance standardisation blows up.
    ranker._build(logs)
    ranker.model.eval()
    store = FeatureStore.build(logs, ranker.encoder, LogColumns())
    inputs = parity_inputs(store, 300)
    reference = TorchBackend(ServingGraph(ranker.model, ranker.config.tasks))
    graph = ExportGraph(ranker.model, ranker.config.tasks)
    assert max_score_difference(reference, TorchBackend(graph), inputs) <= 1e-6
    p_ref, _ = reference.run(*inputs)
    p_new, _ = TorchBackend(graph).run(*inputs)
    assert np.abs(p_ref - p_new).max() <= 1e-6
    path = export_onnx(graph, example_inputs(graph, 2, inputs[0].shape[1], inputs[1].shape[1],
                                             inputs[2].shape[1:]), tmp_path / "g.onnx")
    assert max_score_difference(reference, OnnxBackend(path), inputs) <= PARITY_TOLERANCE


"""Inference backends for the serving graph: PyTorch eager and ONNX Runtime.

The serving graph is the ranker in serving mode (position missing) followed by the weighted
multiplicative score, as one function of the encoded inputs:

    (categorical, dense, multi, device) -> (per-task predictions [N, T], score [N])

It is exported to ONNX once when a model directory is built. At load, both backends run the same
inputs, their scores must agree to ``PARITY_TOLERANCE``, and the faster one serves.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from watchnext.config import TaskSpec
from watchnext.data.batch import Batch
from watchnext.model.ranker import MultitaskRanker
from watchnext.model.score import log_combined_score

INPUTS = ("categorical", "dense", "multi", "device")
OUTPUTS = ("predictions", "score")
PARITY_TOLERANCE = 1e-5
OPSET = 17


class ServingGraph(nn.Module):
    """Encoded inputs to predictions and combined score, position treated as missing."""

    def __init__(self, model: MultitaskRanker, tasks: tuple[TaskSpec, ...]):
        super().__init__()
        self.model, self.tasks = model, tasks

    def forward(self, categorical: torch.Tensor, dense: torch.Tensor, multi: torch.Tensor,
                device: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = Batch(categorical=categorical, dense=dense, multi=multi,
                      position=torch.zeros_like(device), device=device,
                      labels=dense[:, :0], users=None, requests=None)
        predictions = self.model.predict(self.model(batch, serving=True).logits)
        return predictions, torch.exp(log_combined_score(predictions, self.tasks))


class Backend(Protocol):
    name: str

    def run(self, categorical: np.ndarray, dense: np.ndarray, multi: np.ndarray,
            device: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class TorchBackend:
    """PyTorch eager inference; always available."""

    name = "torch"

    def __init__(self, graph: ServingGraph):
        self.graph = graph.eval()

    def run(self, categorical: np.ndarray, dense: np.ndarray, multi: np.ndarray,
            device: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            preds, score = self.graph(torch.from_numpy(categorical), torch.from_numpy(dense),
                                      torch.from_numpy(multi), torch.from_numpy(device))
        return preds.numpy(), score.numpy()


class OnnxBackend:
    """ONNX Runtime inference of the exported serving graph."""

    name = "onnx"

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def run(self, categorical: np.ndarray, dense: np.ndarray, multi: np.ndarray,
            device: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feed = {name: value for name, value in zip(INPUTS, (categorical, dense, multi, device),
                                                   strict=True) if name in self.inputs}
        preds, score = self.session.run(OUTPUTS, feed)
        return preds, score


def example_inputs(graph: ServingGraph, n: int, categorical: int, dense: int,
                   multi: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the right shapes (index 0 = missing is valid for every table)."""
    return (torch.zeros((n, categorical), dtype=torch.long), torch.zeros((n, dense)),
            torch.zeros((n, *multi), dtype=torch.long), torch.zeros(n, dtype=torch.long))


def export_onnx(graph: ServingGraph, inputs: tuple[torch.Tensor, ...], path: str | Path) -> Path:
    """Export the serving graph with a dynamic number of candidates."""
    path = Path(path)
    dynamic = {name: {0: "candidates"} for name in (*INPUTS, *OUTPUTS)}
    with warnings.catch_warnings():
        # The torch.export-based exporter needs onnxscript, which we do not depend on; the
        # TorchScript exporter handles this plain feed-forward graph and warns it is legacy.
        warnings.simplefilter("ignore", DeprecationWarning)
        # index_add (the shallow tower's bias on engagement logits) triggers a generic warning
        # about duplicate indices; ours are distinct task indices, and parity is checked after.
        warnings.filterwarnings("ignore", message=".*duplicated values in 'index'")
        torch.onnx.export(graph.eval(), inputs, str(path), input_names=list(INPUTS),
                          output_names=list(OUTPUTS), dynamic_axes=dynamic, opset_version=OPSET,
                          dynamo=False)
    return path


def max_score_difference(a: Backend, b: Backend, inputs: tuple[np.ndarray, ...]) -> float:
    """Largest absolute difference of the combined scores of two backends on the same inputs."""
    return float(np.abs(a.run(*inputs)[1].astype(np.float64)
                        - b.run(*inputs)[1].astype(np.float64)).max(initial=0.0))


def median_seconds(backend: Backend, inputs: tuple[np.ndarray, ...], repeats: int = 15,
                   budget_s: float = 1.0) -> float:
    """Median time of ``backend`` on ``inputs`` over up to ``repeats`` runs within ``budget_s``."""
    backend.run(*inputs)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        backend.run(*inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times))

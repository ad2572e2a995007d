"""Inference backends for the serving graph: PyTorch eager and ONNX Runtime.

The serving graph is the ranker in serving mode (position missing) followed by the weighted
multiplicative score, as one function of the encoded inputs:

    (categorical, dense, multi, device) -> (per-task predictions [N, T], score [N])

It is exported to ONNX once when a model directory is built. At load, both backends run the same
inputs, their scores must agree to ``PARITY_TOLERANCE``, and the faster one serves.

``ServingGraph`` calls the model's own ``forward``: it is the reference. ``ExportGraph`` computes
the same function in a form ONNX Runtime runs faster (profiled on the kuairand model: the MMoE
einsum and the experts' broadcast input took about 30% of the time, the per-feature embedding
lookups another 30%): embeddings of equal width looked up from one concatenated table (the bottom
layer's weight columns permuted to match), the experts' first layers fused into one matmul, and
the gate mixing as a batched matmul. Whatever it computes is checked against the reference.
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


class ExportGraph(ServingGraph):
    """The reference graph re-expressed for export; same parameters, same outputs."""

    def __init__(self, model: MultitaskRanker, tasks: tuple[TaskSpec, ...]):
        super().__init__(model, tasks)
        self._group_embeddings(model)
        self.fused = model.mmoe is not None
        if self.fused:
            experts = model.mmoe.experts
            first, bias = experts.weights[0], experts.biases[0]  # [E, d_in, d_out], [E, 1, d_out]
            self.register_buffer("expert_w0", first.detach().permute(1, 0, 2).reshape(
                first.shape[1], -1).clone())
            self.register_buffer("expert_b0", bias.detach().reshape(-1).clone())

    def _group_embeddings(self, model: MultitaskRanker) -> None:
        """One table per embedding width; ``perm`` maps grouped input columns to the original."""
        layer = model.inputs
        starts, offset = [], 0
        for e in layer.embeddings:
            starts.append(offset)
            offset += e.embedding_dim
        widths = sorted({e.embedding_dim for e in layer.embeddings})
        self.widths = widths
        perm: list[int] = []
        for g, width in enumerate(widths):
            members = [i for i, e in enumerate(layer.embeddings) if e.embedding_dim == width]
            tables = [layer.embeddings[i].weight.detach() for i in members]
            sizes = torch.tensor([0] + [t.shape[0] for t in tables[:-1]])
            self.register_buffer(f"table{g}", torch.cat(tables).clone())
            self.register_buffer(f"offsets{g}", torch.cumsum(sizes, 0))
            self.register_buffer(f"columns{g}", torch.tensor(members, dtype=torch.long))
            perm += [starts[i] + j for i in members for j in range(width)]
        perm += list(range(offset, layer.out_dim))  # multi-valued bags, then dense, unchanged
        first = model.bottom[0]
        self.register_buffer("bottom_w0", first.weight.detach()[:, perm].t().contiguous())
        self.register_buffer("bottom_b0", first.bias.detach().clone())
        self.register_buffer("perm", torch.tensor(perm, dtype=torch.long))

    def _inputs(self, batch: Batch) -> torch.Tensor:
        """The input layer's output with columns in ``perm`` order."""
        n = batch.categorical.shape[0]
        parts = []
        for g in range(len(self.widths)):
            columns = batch.categorical.index_select(1, getattr(self, f"columns{g}"))
            ids = columns + getattr(self, f"offsets{g}")
            parts.append(getattr(self, f"table{g}")[ids].reshape(n, -1))
        layer = self.model.inputs
        parts += [bag(batch.multi[:, j]) for j, bag in enumerate(layer.bags)]
        parts.append(batch.dense)
        return torch.cat(parts, dim=1)

    def _bottom(self, x: torch.Tensor) -> torch.Tensor:
        """The bottom MLP, its first layer reading the permuted input columns."""
        h = x @ self.bottom_w0 + self.bottom_b0
        for layer in list(self.model.bottom)[1:]:
            h = layer(h)
        return h

    def _experts(self, h: torch.Tensor) -> torch.Tensor:
        """Expert outputs ``[N, E, d]``: layer 1 as one matmul, deeper layers batched."""
        experts = self.model.mmoe.experts
        out = h @ self.expert_w0 + self.expert_b0
        out = out.view(h.shape[0], experts.groups, -1)
        last = len(experts.weights) - 1
        if last > 0 or experts.final_relu:
            out = torch.relu(out)
        if last == 0:
            return out
        out = out.transpose(0, 1)  # [E, N, d]
        for i in range(1, last + 1):
            out = torch.baddbmm(experts.biases[i], out, experts.weights[i])
            if i < last or experts.final_relu:
                out = torch.relu(out)
        return out.transpose(0, 1)

    def forward(self, categorical: torch.Tensor, dense: torch.Tensor, multi: torch.Tensor,
                device: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        batch = Batch(categorical=categorical, dense=dense, multi=multi,
                      position=torch.zeros_like(device), device=device,
                      labels=dense[:, :0], users=None, requests=None)
        x = self._inputs(batch)
        h = self._bottom(x)
        gate_x = x.index_select(1, torch.argsort(self.perm)) if model.gate_from_input else h
        if self.fused:
            mmoe = model.mmoe
            gates = torch.softmax(mmoe.gates(gate_x).view(-1, mmoe.num_tasks, mmoe.num_experts),
                                  dim=-1)  # [N, T, E]
            features = torch.matmul(gates, self._experts(h)).transpose(0, 1)  # [T, N, d]
        elif model.ple is not None:
            features, _ = model.ple(h, gate_x)
        else:
            features = h
        logits = model.towers(features).squeeze(-1).transpose(0, 1)  # [N, T]
        if model.shallow_tower is not None:
            bias = model.shallow_tower(torch.zeros_like(device), device)
            logits = logits.index_add(1, model.engagement_index, bias)
        predictions = model.predict(logits)
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

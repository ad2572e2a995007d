"""Evaluation of a trained ranker: per-task metrics, gate health and the learned position bias."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from watchnext.config import RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.evaluate import bias, metrics
from watchnext.model.ranker import MultitaskRanker
from watchnext.model.score import log_combined_score

POLARISED = 0.9  # a gate that puts this much mean weight on one expert has collapsed


@torch.inference_mode()
def predict_batch(model: MultitaskRanker, batch: Batch, serving: bool = True,
                  chunk_size: int = 16384, gates: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-task predictions ``[N, T]`` and, for MMoE/PLE with ``gates``, the gate weights ``[N, T, E]``.

    The outputs are allocated once, before the loop: results kept chunk by chunk would sit
    between the freed activations of later chunks and fragment the heap, which grows RSS with
    every chunk when ``train.retain_freed_memory`` keeps freed memory.
    """
    preds, _, weights = _predict(model, batch, serving, chunk_size, gates, logged=False)
    return preds, weights


@torch.inference_mode()
def predict_serving_and_logged(model: MultitaskRanker, batch: Batch, chunk_size: int = 16384
                               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Serving-mode predictions, predictions with the logged positions, and the gates, from one
    forward pass per chunk (only the shallow tower is run again, with the position missing)."""
    return _predict(model, batch, False, chunk_size, gates=True, logged=True)


def _predict(model: MultitaskRanker, batch: Batch, serving: bool, chunk_size: int, gates: bool,
             logged: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    model.eval()
    n, tasks = len(batch), len(model.is_binary)
    preds = torch.empty(n, tasks)
    with_position = torch.empty(n, tasks) if logged else None
    weights = torch.empty(n, tasks, model.gate_width) if gates and model.gate_width else None
    for start in range(0, n, chunk_size):
        chunk = batch.slice(start, start + chunk_size)
        out = model(chunk, serving=serving)
        stop = start + len(out.logits)
        logits = out.logits
        if with_position is not None:
            with_position[start:stop] = model.predict(out.logits)
            if model.shallow_tower is not None:
                logits = model.add_bias(out.main_logits, torch.zeros_like(chunk.position),
                                        chunk.device)[0]
        preds[start:stop] = model.predict(logits)
        if weights is not None:
            weights[start:stop] = out.gates
    return (preds.numpy(), None if with_position is None else with_position.numpy(),
            None if weights is None else weights.numpy())


def task_metrics(config: RunConfig, preds: np.ndarray, batch: Batch) -> dict[str, dict[str, float]]:
    """AUC / log loss (binary, plus GAUC by user) or RMSE (regression) for every task."""
    labels = batch.labels.numpy()
    out = {}
    for j, task in enumerate(config.tasks):
        present = ~np.isnan(labels[:, j])
        y, p = labels[present, j], preds[present, j]
        if task.type == "binary":
            row = {"auc": metrics.auc(y, p), "logloss": metrics.log_loss(y, p),
                   "positive_rate": float(y.mean()) if len(y) else float("nan")}
            if (batch.users[present] >= 0).all():
                row["gauc"] = metrics.grouped_auc(y, p, batch.users[present])
        else:
            row = {"rmse": metrics.rmse(y, p)}
        row["rows"] = int(present.sum())
        out[task.name] = row
    return out


def request_ndcg(config: RunConfig, preds: np.ndarray, batch: Batch, k: int = 10
                 ) -> dict[str, float]:
    """NDCG@k of the combined score within each request, against each binary task's labels."""
    if (batch.requests < 0).any():
        return {}
    score = log_combined_score(torch.from_numpy(preds), config.tasks).numpy()
    labels = batch.labels.numpy()
    return {task.name: metrics.ndcg_at_k(np.nan_to_num(labels[:, j]), score, batch.requests, k)
            for j, task in enumerate(config.tasks) if task.type == "binary"}


def expert_utilisation(config: RunConfig, gates: np.ndarray | None) -> dict[str, Any]:
    """Mean gate weight per task x expert, and which tasks' gates have polarised."""
    if gates is None:
        return {}
    mean = gates.mean(axis=0)  # [T, E]
    polarised = [t.name for t, row in zip(config.tasks, mean, strict=True)
                 if row.max() >= POLARISED]
    return {"mean_gate": {t.name: [round(float(v), 4) for v in row]
                          for t, row in zip(config.tasks, mean, strict=True)},
            "polarised_tasks": polarised}


def evaluate(config: RunConfig, model: MultitaskRanker, encoder: FeatureEncoder, batch: Batch,
             k: int = 10) -> dict[str, Any]:
    """The full report as plain data (JSON-ready); ``learned_bias`` in the export's JSON form.

    ``tasks`` holds the metrics in serving mode (position treated as missing), which is what
    ranking uses; ``tasks_with_position`` the same metrics with the logged slot's bias added
    (``None`` without a position column). On logged data the second is the fair comparison
    with a model that has no shallow tower, whose two are equal.
    """
    preds, logged, gates = predict_serving_and_logged(model, batch)
    with_position = task_metrics(config, logged, batch) if config.bias.position else None
    return {
        "rows": len(batch),
        "tasks": task_metrics(config, preds, batch),
        "tasks_with_position": with_position,
        "ndcg_at_k": {"k": k, **request_ndcg(config, preds, batch, k)},
        "experts": expert_utilisation(config, gates),
        "learned_bias": bias.to_json(bias.learned_bias(model, encoder)),
    }

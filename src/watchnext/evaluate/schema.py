"""One report schema for every command that writes results.

``train`` (OUT/metrics.json), ``evaluate --json``, ``inspect --json`` and the demo
(OUT/report.json) all write a ``Report``, so one script reads them all::

    report = Report.from_json(json.load(open("runs/model/metrics.json")))
    for name, model in report.models.items():
        print(name, model.training.kept_epoch, model.evaluations["test"].serving["click"]["auc"])

Task metrics come twice, labelled: ``serving`` (the position treated as missing: what ranking
uses) and ``with_position`` (the shallow tower's bias for the logged slot added: what the
training loss saw). A debiased model looks worse than an undebiased one in serving mode on
logged data, because the logged clicks carry the slot's bias; showing both keeps that visible.
Numbers are rounded to 6 significant digits; a metric that cannot be computed is ``null``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SCHEMA = "watchnext.report/1"
DIGITS = 6  # significant digits: enough to see why training stopped (losses differ in the 4th)

Command = Literal["train", "evaluate", "inspect", "demo"]
TaskMetrics = dict[str, dict[str, float | None]]


class ReportError(ValueError):
    """A JSON document that is not a watchnext report (names the field)."""


@dataclass
class Epoch:
    """One training epoch: mean training loss and validation loss per task (+ ``total``)."""

    epoch: int  # 1-based within its chunk
    train_loss: dict[str, float | None]
    valid_loss: dict[str, float | None] | None = None
    chunk: str | None = None  # the day, for sequential training


@dataclass
class Training:
    """How training went: which epoch's weights were kept, and the per-epoch losses."""

    kept_epoch: int | None  # 1-based epoch (of the last chunk) whose weights were saved
    epochs_run: int
    stopped_early: bool
    seconds: float | None
    history: list[Epoch] = field(default_factory=list)
    source: str | None = None  # the metrics file inspect / evaluate read it from (None: trained here)


@dataclass
class Evaluation:
    """Metrics of one model on one data set."""

    data: str  # "test split", "valid split" or the files evaluated
    rows: int
    serving: TaskMetrics
    with_position: TaskMetrics | None  # None when the config has no position column
    ndcg_at_k: dict[str, float | None]  # {"k": 10, task: NDCG of the combined score, serving}
    experts: dict[str, Any]  # {"mean_gate": {task: [per expert]}, "polarised_tasks": [...]}


@dataclass
class ModelReport:
    """One trained model: what it is, what it costs, how it trained and how it scores."""

    name: str  # the run config's name
    kind: str  # mmoe | ple | shared_bottom
    tasks: list[dict[str, Any]]  # name, type, group, exponent, in prediction order
    devices: list[str]
    cost: dict[str, int]  # multiplications per example (``serving``, ``shallow_tower``, parts)
    learned_bias: dict[str, Any]  # the shallow tower's bias, watchnext.evaluate.bias JSON (data-free)
    training: Training | None = None
    evaluations: dict[str, Evaluation] = field(default_factory=dict)


@dataclass
class Report:
    """What a command wrote: one or more models (the demo compares two) and free extras."""

    command: Command
    models: dict[str, ModelReport]
    extra: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: NaN and infinities as null, floats to 6 significant digits."""
        return _clean(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """Read a report back, checking the schema and the fields every report has."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ReportError(f"schema: expected {SCHEMA!r}, found {found!r}")
        try:
            models = {name: _model(name, m) for name, m in _get(data, "models", dict).items()}
        except TypeError as exc:  # a dataclass given unknown or too few fields
            raise ReportError(f"models: {exc}") from exc
        return cls(command=_get(data, "command", str), models=models,
                   extra=data.get("extra", {}), schema=SCHEMA)


def _model(name: str, data: dict[str, Any]) -> ModelReport:
    where = f"models.{name}"
    training = data.get("training")
    if training is not None:
        training = Training(**{**training, "history": [
            Epoch(**epoch) for epoch in _get(training, "history", list, f"{where}.training")]})
    evaluations = {split: Evaluation(**ev) for split, ev in
                   _get(data, "evaluations", dict, where).items()}
    fields = {k: _get(data, k, object, where) for k in
              ("name", "kind", "tasks", "devices", "cost", "learned_bias")}
    return ModelReport(**fields, training=training, evaluations=evaluations)


def _get(data: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    name = f"{where}.{key}" if where else key
    if key not in data:
        raise ReportError(f"{name}: missing")
    if not isinstance(data[key], kind):
        raise ReportError(f"{name}: expected {kind.__name__}, found {type(data[key]).__name__}")
    return data[key]


def significant(value: float, digits: int = DIGITS) -> float | None:
    """``value`` to ``digits`` significant digits; None for NaN or infinity (not JSON)."""
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if hasattr(value, "item"):  # NumPy scalars
        return _clean(value.item())
    if isinstance(value, float):
        return significant(value)
    return value


def evaluation(report: dict[str, Any], data: str) -> Evaluation:
    """An ``Evaluation`` from ``Ranker.evaluate``'s dict (serving metrics under ``tasks``)."""
    return Evaluation(data=data, rows=report["rows"], serving=report["tasks"],
                      with_position=report.get("tasks_with_position"),
                      ndcg_at_k=report.get("ndcg_at_k", {}), experts=report.get("experts", {}))


def training(histories: list[Any], max_epochs: int, seconds: float | None = None,
             chunks: list[str] | None = None) -> Training:
    """A ``Training`` from the trainer's histories (objects with ``train``, ``valid`` and the
    0-based ``best_epoch``), one per chunk; ``chunks`` names them (default: 1, 2, ...)."""
    epochs = [Epoch(epoch=i + 1, train_loss=train,
                    valid_loss=h.valid[i] if i < len(h.valid) else None,
                    chunk=chunks[c] if chunks else str(c + 1) if len(histories) > 1 else None)
              for c, h in enumerate(histories) for i, train in enumerate(h.train)]
    last = histories[-1] if histories else None
    kept = last.best_epoch + 1 if last is not None and last.best_epoch >= 0 else None
    ran = len(last.train) if last is not None else 0
    return Training(kept_epoch=kept, epochs_run=ran, stopped_early=last is not None and ran < max_epochs,
                    seconds=seconds, history=epochs)

"""The Python API: a scikit-learn-style estimator that the CLI only wraps.

    ranker = Ranker(load_config("kuairand.toml")).fit(train_table, valid_table)
    report = ranker.evaluate(test_table)
    ranker.save("runs/mmoe")  ...  Ranker.load("runs/mmoe").predict_score(candidates)

Prediction follows scikit-learn's names: ``predict`` gives every task's prediction,
``predict_score`` the combined ranking score, ``predict_table`` both as a table; ``evaluate``
(not ``score``, which in scikit-learn returns one metric) gives the full report.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from watchnext.config import ConfigError, RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.errors import DataError
from watchnext.data.io import read_tables, where
from watchnext.evaluate import schema
from watchnext.evaluate.bias import LearnedBias, learned_bias, to_json
from watchnext.evaluate.report import evaluate, predict_batch
from watchnext.model.cost import multiplications
from watchnext.model.load import LoadedModel, load_model
from watchnext.model.ranker import MultitaskRanker
from watchnext.model.score import combined_score
from watchnext.train import loop
from watchnext.train.sources import TableSource
from watchnext.train.speed import apply_process_settings

TableLike = pa.Table | str | Path | Sequence[str]
Exponents = Sequence[float] | Mapping[str, float]


def as_table(data: TableLike) -> pa.Table:
    return data if isinstance(data, pa.Table) else read_tables(data)


def _maybe_table(data: TableLike | None) -> pa.Table | None:
    return None if data is None else as_table(data)


@dataclass
class History:
    """One day's training: loss per epoch, validation loss per epoch (or after the day), and
    the epoch whose weights were kept."""

    train: list[dict[str, float]] = field(default_factory=list)
    valid: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1

    @classmethod
    def from_day(cls, record: dict[str, Any]) -> History:
        valid = record.get("valid") or ([record["valid_loss"]] if "valid_loss" in record else [])
        return cls(record["epochs"], valid, record.get("best_epoch", len(record["epochs"]) - 1))


class Ranker:
    """Multitask watch-next ranker. Parameters live in the config; ``fit`` learns the rest.

    Every ``fit`` runs the one training loop (watchnext.train.loop) on ``train.device``; the
    fitted model is then held on the CPU for prediction.
    """

    def __init__(self, config: RunConfig, log: Callable[[str], None] | None = None):
        if not isinstance(config, RunConfig):
            raise TypeError(f"Ranker needs a RunConfig, got {type(config).__name__}")
        self.config = config
        self.log = log or (lambda _msg: None)
        self.encoder: FeatureEncoder | None = None
        self.model: MultitaskRanker | None = None
        self.history: list[History] = []
        self.metrics: dict[str, Any] = {}
        self.global_step = 0

    def _build(self, train: pa.Table) -> None:
        """Fit the encoder and build an untrained model (to count its cost, for instance)."""
        torch.manual_seed(self.config.train.seed)
        self.encoder = FeatureEncoder(self.config).fit(train)
        self.model = MultitaskRanker(self.config, self.encoder,
                                     sparse=self.config.train.sparse_embeddings)

    def fit(self, train: TableLike, valid: TableLike | None = None, **options: Any) -> Ranker:
        """Fit vocabularies on ``train``, then train up to ``train.max_epochs`` epochs; with
        ``valid``, stop early and keep the best epoch. ``options`` are ``LoopOptions`` fields."""
        apply_process_settings(self.config.train)
        options = {"epochs_per_day": self.config.train.max_epochs, **options}
        result = loop.train(self.config, TableSource([("train", as_table(train))]), None,
                            loop.LoopOptions(**options), _maybe_table(valid),
                            early_stopping=valid is not None, log=self.log)
        return self._hold(result)

    def fit_sequential(self, chunks: Sequence[tuple[str, TableLike]], run_dir: str | Path,
                       valid: TableLike | None = None, resume: bool = False,
                       **options: Any) -> Ranker:
        """Train on time-ordered chunks (days), one pass each by default (``epochs_per_day``),
        each warm from the previous; checkpoints in ``run_dir`` as ``train-stream`` writes them,
        and ``resume`` continues a killed run exactly. ``valid`` is evaluated after each day."""
        apply_process_settings(self.config.train)
        source = TableSource([(name, as_table(data)) for name, data in chunks])
        result = loop.train(self.config, source, run_dir,
                            loop.LoopOptions(resume=resume, **options), _maybe_table(valid),
                            log=self.log)
        return self._hold(result)

    def fit_stream(self, data: str | Path, run_dir: str | Path, valid: str | Path | None = None,
                   **options: Any) -> Ranker:
        """Stream ``day=YYYY-MM-DD/`` Parquet partitions from disk in bounded memory (several
        processes under torchrun), checkpointing as it goes; then hold the trained model.

        ``options`` are ``watchnext.train.loop.LoopOptions`` fields (``resume``,
        ``skip_bad_rows``, ``checkpoint_every``, ``shards``, ...); see docs/distributed.md.
        """
        from watchnext.train.streaming import train_stream

        return self._hold(train_stream(self.config, data, run_dir, loop.LoopOptions(**options),
                                       valid, self.log))

    def _hold(self, result: loop.LoopResult) -> Ranker:
        self.encoder, self.model = result.encoder, result.model.cpu().eval()
        self.metrics, self.global_step = result.metrics, result.global_step
        self.history = [History.from_day(day) for day in result.metrics["days"]]
        return self

    def encode(self, data: TableLike, targets: bool = True) -> Batch:
        """Encode a table; ``targets=False`` needs only the input columns (see FeatureEncoder)."""
        self._check_fitted()
        return self.encoder.transform(as_table(data), targets=targets)

    def predict(self, data: TableLike | Batch, with_position: bool = False) -> np.ndarray:
        """Per-task predictions ``[N, T]`` (columns in ``config.tasks`` order).

        Needs only the feature columns (and the device, where the config has one): no labels,
        position or request id. Serving mode by default: the position is treated as missing, so a
        prediction is the model's unbiased estimate. ``with_position=True`` adds the shallow
        tower's bias for the logged slot (the table must then hold the position column).
        """
        batch = data if isinstance(data, Batch) else self._encode_inputs(data, with_position)
        return predict_batch(self.model, batch, serving=not with_position, gates=False)[0]

    def predict_score(self, data: TableLike | Batch, with_position: bool = False,
                      exponents: Exponents | None = None) -> np.ndarray:
        """The combined ranking score prod_t pred_t ** w_t, ``[N]``.

        ``exponents`` overrides the config's w_t: a list (one per task) or a mapping
        ``{task: w}`` for the tasks to change, e.g. ``{"like": 0}`` to rank without likes.
        """
        preds = torch.from_numpy(self.predict(data, with_position))
        return combined_score(preds, self.config.tasks, self.exponents(exponents)).numpy()

    def predict_table(self, data: TableLike, with_position: bool = False,
                      exponents: Exponents | None = None, keep: Sequence[str] = ()) -> pa.Table:
        """The ``keep`` columns of ``data``, then one column per task and the combined ``score``."""
        table = as_table(data)
        outputs = [t.name for t in self.config.tasks] + ["score"]
        for column in keep:
            if column not in table.column_names or column in outputs:
                problem = "clashes with an output column" if column in outputs else \
                    "required column is missing"
                raise DataError(f"{problem} (asked to keep it; outputs: {', '.join(outputs)})",
                                file=_file_of(table), column=column)
        preds = self.predict(table, with_position)
        weights = self.exponents(exponents)
        score = combined_score(torch.from_numpy(preds), self.config.tasks, weights).numpy()
        columns = {c: table[c] for c in keep}
        columns |= {t.name: pa.array(preds[:, j]) for j, t in enumerate(self.config.tasks)}
        columns["score"] = pa.array(score)
        return pa.table(columns)

    def exponents(self, override: Exponents | None = None) -> list[float]:
        """The score's exponents w_t in task order: the config's, with ``override`` applied."""
        names = [t.name for t in self.config.tasks]
        if override is None:
            return [t.exponent for t in self.config.tasks]
        if not isinstance(override, Mapping):
            values = [float(w) for w in override]
            if len(values) != len(names):
                raise ConfigError(f"exponents: {len(values)} given, the model has {len(names)} "
                                  f"tasks ({', '.join(names)})")
            return values
        unknown = sorted(set(override) - set(names))
        if unknown:
            raise ConfigError(f"exponents: unknown task {unknown[0]!r} (tasks: {', '.join(names)})")
        return [float(override.get(t.name, t.exponent)) for t in self.config.tasks]

    def score(self, data: TableLike | Batch, exponents: Exponents | None = None) -> np.ndarray:
        """Deprecated: use ``predict_score`` (in scikit-learn, ``score`` returns a metric)."""
        warnings.warn("Ranker.score is deprecated: use Ranker.predict_score", DeprecationWarning,
                      stacklevel=2)
        return self.predict_score(data, exponents=exponents)

    def _encode_inputs(self, data: TableLike, with_position: bool) -> Batch:
        table = as_table(data)
        column = self.config.bias.position
        if with_position and column and column not in table.column_names:
            raise DataError("required column is missing (with_position=True scores the logged "
                            "slot)", file=_file_of(table), column=column)
        return self.encode(table, targets=False)

    def evaluate(self, data: TableLike | Batch, k: int = 10) -> dict[str, Any]:
        batch = data if isinstance(data, Batch) else self.encode(data)
        report = evaluate(self.config, self.model, self.encoder, batch, k)
        report["cost"] = self.cost()
        report["model"] = self.config.model.kind
        return report

    def model_report(self, evaluations: Mapping[str, schema.Evaluation] | None = None,
                     seconds: float | None = None) -> schema.ModelReport:
        """This model's entry in the report schema (``watchnext.evaluate.schema``): what it is,
        what it costs, its learned bias and training history (none needs data), and
        ``evaluations`` as given (``schema.evaluation(self.evaluate(table), "test split")``)."""
        self._check_fitted()
        c = self.config
        histories = [h for h in self.history if h.train]
        return schema.ModelReport(
            name=c.name, kind=c.model.kind, devices=self.devices, cost=self.cost(),
            tasks=[{"name": t.name, "type": t.type, "group": t.group, "exponent": t.exponent}
                   for t in c.tasks],
            learned_bias=to_json(self.learned_bias()),
            training=schema.training(histories, c.train.max_epochs, seconds) if histories else None,
            evaluations=dict(evaluations or {}))

    def learned_bias(self) -> dict[str, LearnedBias]:
        """The shallow tower's bias per engagement task: device -> position -> logit, plus the
        serving value per device (see watchnext.evaluate.bias)."""
        self._check_fitted()
        return learned_bias(self.model, self.encoder)

    def cost(self) -> dict[str, int]:
        self._check_fitted()
        return multiplications(self.model)

    @property
    def devices(self) -> list[str]:
        vocab = self.encoder.vocabularies.get("__device__") if self.encoder else None
        return vocab.values if vocab else []

    def save(self, directory: str | Path) -> Path:
        """The fitted model as one checkpoint folder (no optimiser state: not a run to resume)."""
        self._check_fitted()
        return LoadedModel(self.config, self.encoder, self.model,
                           {"global_step": self.global_step}).save(directory)

    @classmethod
    def load(cls, path: str | Path) -> Ranker:
        """Load a checkpoint folder (or a run folder with LATEST); verified, no pickle.

        Loading builds no training state and changes no process-wide setting (threads, allocator).
        """
        loaded = load_model(path)
        ranker = cls(loaded.config)
        ranker.encoder, ranker.model = loaded.encoder, loaded.model
        ranker.global_step = loaded.state.get("global_step", 0)
        return ranker

    def _check_fitted(self) -> None:
        if self.model is None or self.encoder is None:
            raise RuntimeError("this Ranker is not fitted yet: call fit() or Ranker.load()")


def _file_of(table: pa.Table) -> str:
    return where(table, 0)[0] if table.num_rows else "<table>"

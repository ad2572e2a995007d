"""The Python API: a scikit-learn-style estimator that the CLI only wraps.

    ranker = Ranker(load_config("kuairand.toml")).fit(train_table, valid_table)
    report = ranker.evaluate(test_table)
    ranker.save("runs/mmoe")  ...  Ranker.load("runs/mmoe").score(candidates)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.io import read_tables
from watchnext.evaluate.report import evaluate, predict_batch
from watchnext.model.cost import multiplications
from watchnext.model.ranker import MultitaskRanker
from watchnext.model.score import combined_score
from watchnext.train import loop
from watchnext.train.sources import TableSource
from watchnext.train.speed import apply_process_settings

TableLike = pa.Table | str | Path | Sequence[str]


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

    def encode(self, data: TableLike) -> Batch:
        self._check_fitted()
        return self.encoder.transform(as_table(data))

    def predict(self, data: TableLike | Batch, serving: bool = True) -> np.ndarray:
        """Per-task predictions ``[N, T]`` (serving mode: position treated as missing)."""
        batch = data if isinstance(data, Batch) else self.encode(data)
        return predict_batch(self.model, batch, serving=serving, gates=False)[0]

    def score(self, data: TableLike | Batch, exponents: Sequence[float] | None = None
              ) -> np.ndarray:
        """The combined ranking score prod_t pred_t ** w_t, ``[N]``."""
        preds = torch.from_numpy(self.predict(data))
        return combined_score(preds, self.config.tasks, exponents).numpy()

    def evaluate(self, data: TableLike | Batch, k: int = 10) -> dict[str, Any]:
        batch = data if isinstance(data, Batch) else self.encode(data)
        report = evaluate(self.config, self.model, batch, self.devices, k)
        report["cost"] = self.cost()
        report["model"] = self.config.model.kind
        return report

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
        return ckpt.save_checkpoint(directory, config=self.config,
                                    encoder_state=self.encoder.state_dict(), model=self.model,
                                    state={"global_step": self.global_step})

    @classmethod
    def load(cls, path: str | Path) -> Ranker:
        """Load a checkpoint folder (or a run folder with LATEST); verified, no pickle."""
        saved = ckpt.read_checkpoint(path)
        ranker = cls(saved["config"])
        ranker._restore(saved)
        return ranker

    def _restore(self, saved: dict[str, Any]) -> None:
        self.encoder = FeatureEncoder.from_state(self.config, saved["encoder"])
        self.model = MultitaskRanker(self.config, self.encoder,
                                     sparse=self.config.train.sparse_embeddings)
        self.model.load_state_dict(saved["weights"])
        self.model.eval()
        self.global_step = saved["state"].get("global_step", 0)

    def _check_fitted(self) -> None:
        if self.model is None or self.encoder is None:
            raise RuntimeError("this Ranker is not fitted yet: call fit() or Ranker.load()")

"""The Python API: a scikit-learn-style estimator that the CLI only wraps.

    ranker = Ranker(load_config("kuairand.toml")).fit(train_table, valid_table)
    report = ranker.evaluate(test_table)
    ranker.save("runs/mmoe")  ...  Ranker.load("runs/mmoe").score(candidates)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from watchnext.artifacts import checkpoint as ckpt
from watchnext.config import ConfigError, RunConfig
from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.io import read_tables
from watchnext.evaluate.bias import LearnedBias, learned_bias
from watchnext.evaluate.report import evaluate, predict_batch
from watchnext.model.cost import multiplications
from watchnext.model.ranker import MultitaskRanker
from watchnext.model.score import combined_score
from watchnext.train.trainer import History, Trainer

TableLike = pa.Table | str | Path | Sequence[str]


def as_table(data: TableLike) -> pa.Table:
    return data if isinstance(data, pa.Table) else read_tables(data)


class Ranker:
    """Multitask watch-next ranker. Parameters live in the config; ``fit`` learns the rest."""

    def __init__(self, config: RunConfig, log: Callable[[str], None] | None = None):
        if not isinstance(config, RunConfig):
            raise TypeError(f"Ranker needs a RunConfig, got {type(config).__name__}")
        self.config = config
        self.log = log or (lambda _msg: None)
        self.encoder: FeatureEncoder | None = None
        self.model: MultitaskRanker | None = None
        self.history: list[History] = []
        self.trainer: Trainer | None = None
        self.stream_metrics: dict[str, Any] = {}

    def _build(self, train: pa.Table | Sequence[pa.Table]) -> None:
        torch.manual_seed(self.config.train.seed)
        tables = [train] if isinstance(train, pa.Table) else list(train)
        self.encoder = FeatureEncoder(self.config).fit(pa.concat_tables(
            tables, promote_options="permissive"))
        self.model = MultitaskRanker(self.config, self.encoder,
                                     sparse=self.config.train.sparse_embeddings)
        self.trainer = Trainer(self.config, self.encoder, self.model, self.log)
        cost = multiplications(self.model)
        self.log(f"{self.config.model.kind}: {cost['serving']:,} multiplications per example "
                 f"(+{cost['shallow_tower']:,} in the training-only shallow tower)")

    def fit(self, train: TableLike, valid: TableLike | None = None) -> Ranker:
        """Fit vocabularies on ``train``, then train with early stopping on ``valid``."""
        train_table = as_table(train)
        self._build(train_table)
        valid_batch = self.encode(valid) if valid is not None else None
        self.history = [self.trainer.fit(self.encode(train_table), valid_batch)]
        return self

    def fit_sequential(self, chunks: Sequence[tuple[str, TableLike]], run_dir: str | Path,
                       valid: TableLike | None = None, resume: bool = False) -> Ranker:
        """Train day by day in time order, checkpointing after each chunk (see Trainer)."""
        named = [(name, as_table(data)) for name, data in chunks]
        if resume and (Path(run_dir) / ckpt.LATEST).exists():
            saved = ckpt.read_checkpoint(run_dir)
            self._check_same_run(saved["config"])
            self._restore(saved, for_training=True)
        else:
            self._build([t for _, t in named])
        batches = [(name, self.encode(t)) for name, t in named]
        valid_batch = self.encode(valid) if valid is not None else None
        self.history = self.trainer.fit_sequential(batches, run_dir, valid_batch, resume)
        return self

    def fit_stream(self, data: str | Path, run_dir: str | Path, **options: Any) -> Ranker:
        """Stream ``day=YYYY-MM-DD/`` Parquet partitions from disk in bounded memory (several
        processes under torchrun), checkpointing as it goes; then hold the trained model.

        ``options`` are ``watchnext.train.streaming.StreamOptions`` fields (``resume``,
        ``skip_bad_rows``, ``checkpoint_every``, ``shards``, ...); see docs/distributed.md.
        """
        from watchnext.train.streaming import StreamOptions, train_stream

        result = train_stream(self.config, data, run_dir, StreamOptions(**options), self.log)
        self.stream_metrics = result.metrics
        self._restore(ckpt.read_checkpoint(result.checkpoint or run_dir), for_training=False)
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
        report = evaluate(self.config, self.model, self.encoder, batch, k)
        report["cost"] = self.cost()
        report["model"] = self.config.model.kind
        return report

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
        self._check_fitted()
        return self.trainer.save(directory)

    @classmethod
    def load(cls, path: str | Path) -> Ranker:
        """Load a checkpoint folder (or a run folder with LATEST); verified, no pickle."""
        saved = ckpt.read_checkpoint(path)
        ranker = cls(saved["config"])
        ranker._restore(saved, for_training=False)
        return ranker

    def _restore(self, saved: dict[str, Any], for_training: bool) -> None:
        self.encoder = FeatureEncoder.from_state(self.config, saved["encoder"])
        self.model = MultitaskRanker(self.config, self.encoder,
                                     sparse=self.config.train.sparse_embeddings)
        self.model.load_state_dict(saved["weights"])
        self.model.eval()
        self.trainer = Trainer(self.config, self.encoder, self.model, self.log)
        if not for_training:
            self.trainer.step = saved["state"].get("step", 0)

    def _check_same_run(self, saved: RunConfig) -> None:
        """Resuming with another model, features or tasks would silently train something else."""
        for section in ("features", "tasks", "model", "bias"):
            if getattr(saved, section) != getattr(self.config, section):
                raise ConfigError(f"{section}: differs from the checkpoint's config; "
                                  "resume needs the same run config")

    def _check_fitted(self) -> None:
        if self.model is None or self.encoder is None:
            raise RuntimeError("this Ranker is not fitted yet: call fit() or Ranker.load()")

"""watchnext against its peers on kuairand-sample v1: one table, every setting chosen on validation.

    .venv/bin/python benchmarks/kuairand_peers.py [--quick] [--seeds 0,1,2] [--out runs/kuairand_peers]

Models (rows of the table):
  * watchnext MMoE, the bundled config ``kuairand_v1``;
  * watchnext SharedBottom at the MMoE's multiplications per example (``match_cost``);
  * watchnext PLE (two extraction layers, one expert per task, two shared) at the MMoE's
    multiplications per example (expert width resized by ``match_cost``);
  * LightGBM, one model per task;
  * DeepCTR-Torch's ``MMOE`` (``pip install -e .[bench]``), trained on all seven tasks with the
    same per-task losses and loss weights as watchnext.

Why the comparison is fair: every model reads the SAME encoded feature table, built once by
watchnext's ``FeatureEncoder`` from the config (the protocol's allowed columns plus the
point-in-time history features of ``watchnext.data.history``); every model's settings come from
a small grid scored on the validation day only (the mean validation AUC of click, long_view and
like), and each run stops early on the validation day as well. The test split is scored once,
for the selected setting of each model. Seeds are fixed.

Training seeds (``--seeds``, default 0,1,2): the grid is scored with the first seed; the selected
setting of each model is then trained again with every other seed, and each figure in the table is
the mean over seeds. On the sparse tasks (37 follow, 30 forward, 176 comment positives in the test
days) both the training seed and the sample of test users move the AUC by more than most gaps
between models, so every test AUC comes with a 95% interval from a bootstrap over test users
(resampling users with all their rows, ``watchnext.evaluate.bootstrap``), and the best watchnext
model of each task (by that task's validation AUC) is compared with LightGBM on the same
resamples: a difference whose interval covers zero is a tie.

The table goes to stdout, and as ``peers.json`` and ``peers.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from watchnext.api import Ranker
from watchnext.config import RunConfig, load_config
from watchnext.data.batch import Batch
from watchnext.data.datasets import load_dataset
from watchnext.data.encoder import FeatureEncoder
from watchnext.evaluate.bootstrap import Interval, interval, mean_auc, user_weights
from watchnext.evaluate.report import task_metrics
from watchnext.evaluate.tables import markdown_table
from watchnext.model.cost import match_cost, serving_cost
from watchnext.workflows import bundled_config, equal_cost_pair

KEY_TASKS = ("click", "long_view", "like")
RESAMPLES = 1000  # bootstrap resamples of the test users
COMMAND = ".venv/bin/python benchmarks/kuairand_peers.py"


@dataclass
class Data:
    """The one feature table every model reads: encoded once from the config."""

    config: RunConfig
    tables: dict[str, pa.Table]
    encoder: FeatureEncoder
    batches: dict[str, Batch]

    def features(self, split: str) -> np.ndarray:
        """[N, n_categorical + n_dense] float matrix: id codes first, then numeric features."""
        batch = self.batches[split]
        return np.concatenate([batch.categorical.numpy().astype(np.float32),
                               batch.dense.numpy()], axis=1)

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.encoder.categorical]

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.encoder.numeric]


Predict = Callable[[str], np.ndarray]  # split name -> [N, T] predictions


@dataclass
class Result:
    """One row of the table: the selected setting's metrics, each the mean over training seeds,
    and the per-seed predictions the intervals are computed from."""

    model: str
    settings: dict[str, Any]
    valid: dict[str, dict[str, float]]
    test: dict[str, dict[str, float]]
    seconds: float
    multiplications: int | None = None
    grid: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    test_auc_by_seed: dict[str, list[float]] = field(default_factory=dict)
    test_preds: list[np.ndarray] = field(default_factory=list, repr=False)


def result(data: Data, model: str, settings: dict[str, Any], predictors: list[Predict],
           seeds: list[int], started: float, grid: list[dict[str, Any]],
           multiplications: int | None = None) -> Result:
    """The row of one model from its selected setting's predictors, one per training seed."""
    valid = [metrics(data, "valid", p("valid")) for p in predictors]
    test_preds = [p("test") for p in predictors]
    test = [metrics(data, "test", p) for p in test_preds]
    by_seed = {t: [m[t]["auc"] for m in test] for t in test[0] if "auc" in test[0][t]}
    return Result(model, settings, _mean_metrics(valid), _mean_metrics(test),
                  time.perf_counter() - started, multiplications, grid, seeds, by_seed, test_preds)


def _mean_metrics(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {t: {k: float(np.mean([r[t][k] for r in runs])) for k in runs[0][t]} for t in runs[0]}


def load_data(config: RunConfig) -> Data:
    if config.model.kind != "mmoe":
        raise ValueError("the benchmark config must be an MMoE config")
    if config.bias.position:
        raise ValueError("kuairand-sample v1 has no display position: keep [bias] empty")
    tables = load_dataset(config.data.dataset, config)  # history as its [[history]] blocks say
    encoder = FeatureEncoder(config).fit(tables["train"])
    batches = {split: encoder.transform(table) for split, table in tables.items()}
    return Data(config, tables, encoder, batches)


def metrics(data: Data, split: str, preds: np.ndarray) -> dict[str, dict[str, float]]:
    """The same metric code for every model (watchnext's evaluation)."""
    return task_metrics(data.config, preds, data.batches[split])


def selection_score(valid: dict[str, dict[str, float]]) -> float:
    """What a grid point is chosen by: the mean validation AUC of the three headline tasks."""
    return float(np.mean([valid[t]["auc"] for t in KEY_TASKS]))


def choose(predictors: list[Predict], data: Data) -> tuple[int, list[float]]:
    """Index of the predictor with the best validation score, and every predictor's score."""
    scores = [selection_score(metrics(data, "valid", predict("valid"))) for predict in predictors]
    return int(np.argmax(scores)), scores


# ---------------------------------------------------------------- watchnext


def watchnext_grid(quick: bool) -> list[dict[str, Any]]:
    """Section overrides tried on top of the bundled config (the first is the config itself)."""
    if quick:
        return [{}]
    return [{}, {"model": {"dropout": 0.0}}, {"train": {"weight_decay": 1e-5}},
            {"train": {"learning_rate": 1e-3, "max_epochs": 16}}]


WATCHNEXT_ROWS = {"mmoe": "watchnext MMoE", "shared_bottom": "watchnext SharedBottom (equal mults)",
                  "ple": "watchnext PLE (equal mults)"}
PLE_SHAPE = {"kind": "ple", "ple_layers": 2, "task_experts": 1, "shared_experts": 2}


def run_watchnext(data: Data, kind: str, quick: bool, seeds: list[int]) -> Result:
    """Fit the bundled config (MMoE, or SharedBottom / PLE resized to the MMoE's cost) per grid
    point with the first seed; the selected point again with every other seed."""
    started = time.perf_counter()
    configs, rankers, grid = [], [], []
    for overrides in watchnext_grid(quick):
        sections = {**overrides, "train": {**overrides.get("train", {}), "progress": False,
                                           "seed": seeds[0]}}
        config = data.config.replace(**sections)
        if kind == "shared_bottom":
            config = equal_cost_pair(config, data.tables["train"])["SharedBottom"]
        elif kind == "ple":
            config = match_cost(config.replace(model=PLE_SHAPE), data.encoder,
                                serving_cost(config, data.encoder))
        configs.append(config)
        rankers.append(Ranker(config).fit(data.tables["train"], data.tables["valid"]))
        grid.append({"overrides": overrides, "model": asdict(config.model),
                     "best_epoch": rankers[-1].history[0].best_epoch + 1})
    best, scores = choose([_ranker_predict(r, data) for r in rankers], data)
    for row, score in zip(grid, scores, strict=True):
        row["valid_score"] = round(score, 5)
    replicas = [rankers[best]] + [
        Ranker(configs[best].replace(train={"seed": seed})).fit(data.tables["train"],
                                                                data.tables["valid"])
        for seed in seeds[1:]]
    settings = {**grid[best], "best_epoch": [r.history[0].best_epoch + 1 for r in replicas]}
    return result(data, WATCHNEXT_ROWS[kind], settings, [_ranker_predict(r, data) for r in replicas],
                  seeds, started, grid, rankers[best].cost()["serving"])


def _ranker_predict(ranker: Ranker, data: Data) -> Predict:
    return lambda split: ranker.predict(data.tables[split])


# ---------------------------------------------------------------- LightGBM


def lightgbm_grid(quick: bool) -> list[dict[str, Any]]:
    if quick:
        return [{"num_leaves": 15}]
    return [{"num_leaves": leaves, "min_child_samples": child}
            for leaves in (7, 15, 31) for child in (20, 100)]


def run_lightgbm(data: Data, quick: bool, seeds: list[int]) -> Result:
    """One LightGBM model per task, each with its own grid point chosen on validation (first
    seed); the selected point trained again with every other seed (row and column subsampling).

    Categorical columns stay LightGBM categoricals; early stopping on the validation loss (log loss,
    or L2 for watch_time), at most 3000 rounds of learning rate 0.03. One thread: on a small,
    busy machine OpenMP threads that spin-wait cost far more than they give.
    """
    import lightgbm as lgb

    started = time.perf_counter()
    x = {split: data.features(split) for split in ("train", "valid", "test")}
    labels = {split: np.ascontiguousarray(data.batches[split].labels.numpy().T) for split in x}
    categorical = list(range(len(data.categorical_names)))
    preds = [{split: np.zeros((len(x[split]), len(data.config.tasks))) for split in x}
             for _ in seeds]
    settings, grids = {}, {}

    def fit(task_type: str, j: int, params: dict[str, Any], seed: int) -> Any:
        model = _lightgbm_model(lgb, task_type, params, seed)
        with warnings.catch_warnings():  # eval_set: deprecated in 4.7, the only way before
            warnings.filterwarnings("ignore", message="The argument 'eval_set' is deprecated")
            model.fit(x["train"], labels["train"][j], eval_set=[(x["valid"], labels["valid"][j])],
                      categorical_feature=categorical,
                      callbacks=[lgb.early_stopping(100, first_metric_only=True, verbose=False)])
        return model

    for j, task in enumerate(data.config.tasks):
        best = None
        for params in lightgbm_grid(quick):
            model = fit(task.type, j, params, seeds[0])
            valid_pred = _lightgbm_predict(model, task.type, x["valid"])
            score = _task_score(task.type, labels["valid"][j], valid_pred)
            grids.setdefault(task.name, []).append(
                {**params, "rounds": model.best_iteration_, "valid_score": round(score, 5)})
            if best is None or score > best[0]:
                best = (score, params, model)
        _, params, model = best
        models = [model] + [fit(task.type, j, params, seed) for seed in seeds[1:]]
        settings[task.name] = {**params, "rounds": [m.best_iteration_ for m in models]}
        for seed_preds, m in zip(preds, models, strict=True):
            for split in x:
                seed_preds[split][:, j] = _lightgbm_predict(m, task.type, x[split])
    grid = [{"task": t, **g} for t, rows in grids.items() for g in rows]
    predictors = [lambda split, p=p: p[split] for p in preds]
    return result(data, "LightGBM (one model per task)", settings, predictors, seeds, started, grid)


def _lightgbm_model(lgb: Any, task_type: str, params: dict[str, Any], seed: int) -> Any:
    common = {"n_estimators": 3000, "learning_rate": 0.03, "subsample": 0.8, "subsample_freq": 1,
              "colsample_bytree": 0.8, "reg_lambda": 1.0, "random_state": seed, "n_jobs": 1,
              "verbose": -1, **params}
    if task_type == "binary":
        return lgb.LGBMClassifier(**common)
    return lgb.LGBMRegressor(**common)


def _lightgbm_predict(model: Any, task_type: str, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x)[:, 1] if task_type == "binary" else model.predict(x)


def _task_score(task_type: str, y: np.ndarray, pred: np.ndarray) -> float:
    """Higher is better: AUC for binary tasks, minus RMSE for regression."""
    from watchnext.evaluate.metrics import auc, rmse

    return auc(y, pred) if task_type == "binary" else -rmse(y, pred)


# ---------------------------------------------------------------- DeepCTR-Torch


def deepctr_grid(quick: bool) -> list[dict[str, Any]]:
    """DeepCTR's MMOE defaults, and a shape like watchnext's (8 experts of 64 units)."""
    default = {"num_experts": 3, "expert_dnn_hidden_units": (256, 128),
               "gate_dnn_hidden_units": (64,), "tower_dnn_hidden_units": (64,)}
    ours = {"num_experts": 8, "expert_dnn_hidden_units": (128, 64), "gate_dnn_hidden_units": (),
            "tower_dnn_hidden_units": (32,)}
    if quick:
        return [{**default, "dnn_dropout": 0.0, "learning_rate": 1e-3}]
    return [{**shape, "dnn_dropout": dropout, "learning_rate": 1e-3}
            for shape in (default, ours) for dropout in (0.0, 0.2)]


def run_deepctr(data: Data, quick: bool, seeds: list[int]) -> Result:
    """DeepCTR-Torch's MMOE on the same features, losses and early stopping as watchnext."""
    started = time.perf_counter()
    epochs = 4 if quick else data.config.train.max_epochs
    fits = [_fit_deepctr(data, params, epochs, seeds[0]) for params in deepctr_grid(quick)]
    best, scores = choose([predict for predict, _ in fits], data)
    grid = [{**params, "best_epoch": epoch, "valid_score": round(score, 5)}
            for params, (_, epoch), score in zip(deepctr_grid(quick), fits, scores, strict=True)]
    replicas = [fits[best]] + [_fit_deepctr(data, deepctr_grid(quick)[best], epochs, seed)
                               for seed in seeds[1:]]
    settings = {**grid[best], "best_epoch": [epoch for _, epoch in replicas]}
    return result(data, "DeepCTR-Torch MMOE", settings, [p for p, _ in replicas], seeds, started,
                  grid)


def _deepctr_inputs(data: Data, split: str) -> dict[str, np.ndarray]:
    x = data.features(split)
    return {name: x[:, i] for i, name in enumerate(data.categorical_names + data.numeric_names)}


def _fit_deepctr(data: Data, params: dict[str, Any], max_epochs: int, seed: int
                 ) -> tuple[Predict, int]:
    """Train epoch by epoch with DeepCTR's own ``fit``; keep the epoch of lowest validation loss
    (the same weighted per-task loss as watchnext's early stopping, patience from the config)."""
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import MMOE

    cfg = data.config
    columns = [SparseFeat(f.name, data.encoder.vocab_size(f.name), embedding_dim=f.embedding_dim)
               for f in data.encoder.categorical]
    columns += [DenseFeat(name, 1) for name in data.numeric_names]
    shape = {k: v for k, v in params.items() if k != "learning_rate"}
    with contextlib.redirect_stdout(io.StringIO()):
        model = MMOE(columns, task_types=[t.type for t in cfg.tasks],
                     task_names=[t.name for t in cfg.tasks], seed=seed, device="cpu", **shape)
    model.compile(torch.optim.Adam(model.parameters(), lr=params["learning_rate"]),
                  loss=_weighted_loss(cfg))
    torch.manual_seed(seed)
    x_train, y_train = _deepctr_inputs(data, "train"), data.batches["train"].labels.numpy()
    predict = _deepctr_predict(model, data)
    best, best_state, best_epoch, waited = math.inf, None, 0, 0
    for epoch in range(max_epochs):
        with contextlib.redirect_stdout(io.StringIO()):
            model.fit(x_train, y_train, batch_size=cfg.train.batch_size, epochs=1, verbose=0)
        loss = _validation_loss(cfg, data, predict("valid"))
        if loss < best - 1e-5:
            best, best_epoch, waited = loss, epoch + 1, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited > cfg.train.patience:
                break
    model.load_state_dict(best_state)
    return predict, best_epoch


def _deepctr_predict(model: Any, data: Data) -> Predict:
    return lambda split: model.predict(_deepctr_inputs(data, split), batch_size=8192)


def _weighted_loss(cfg: RunConfig) -> Callable[..., torch.Tensor]:
    """DeepCTR calls ``loss(y_pred, y, reduction="sum")`` on [batch, T] (binary outputs are
    probabilities): cross-entropy or squared error per task, weighted like watchnext's."""
    weights = torch.tensor([t.loss_weight for t in cfg.tasks])
    binary = torch.tensor([t.type == "binary" for t in cfg.tasks])

    def loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        as_probability = torch.where(binary, pred, torch.full_like(pred, 0.5)).clamp(1e-7, 1 - 1e-7)
        bce = torch.nn.functional.binary_cross_entropy(
            as_probability, torch.where(binary, target, torch.zeros_like(target)), reduction="none")
        per_cell = torch.where(binary, bce, (pred - target) ** 2) * weights
        return per_cell.sum() if reduction == "sum" else per_cell.sum(1).mean()

    return loss


def _validation_loss(cfg: RunConfig, data: Data, preds: np.ndarray) -> float:
    y = data.batches["valid"].labels.numpy().astype(np.float64)
    p = np.clip(preds, 1e-7, 1 - 1e-7)
    total = 0.0
    for j, task in enumerate(cfg.tasks):
        if task.type == "binary":
            value = -np.mean(y[:, j] * np.log(p[:, j]) + (1 - y[:, j]) * np.log(1 - p[:, j]))
        else:
            value = np.mean((preds[:, j] - y[:, j]) ** 2)
        total += task.loss_weight * value
    return float(total)


# ---------------------------------------------------------------- the table


def table_rows(results: list[Result], tasks: list[str]) -> tuple[list[str], list[list[str]]]:
    """One row per model: test AUCs (headline tasks first), GAUCs, RMSE, then validation AUCs."""
    others = [t for t in tasks if t not in KEY_TASKS and t != "watch_time"]
    header = ["model", *[f"test AUC {t}" for t in KEY_TASKS], "test GAUC click", "test GAUC like",
              *[f"test AUC {t}" for t in others], "test RMSE watch_time",
              *[f"valid AUC {t}" for t in KEY_TASKS], "mults/example", "seconds"]
    rows = []
    for r in results:
        rows.append([
            r.model, *[_f(r.test[t]["auc"]) for t in KEY_TASKS], _f(r.test["click"].get("gauc")),
            _f(r.test["like"].get("gauc")), *[_f(r.test[t]["auc"]) for t in others],
            _f(r.test["watch_time"]["rmse"]), *[_f(r.valid[t]["auc"]) for t in KEY_TASKS],
            f"{r.multiplications:,}" if r.multiplications else "-", f"{r.seconds:.0f}"])
    return header, rows


def _f(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def plain_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# ---------------------------------------------------------------- intervals


@dataclass
class Comparison:
    """Per model and binary task, the seed-mean test AUC with its user-bootstrap interval; per
    task, the best watchnext model (by that task's validation AUC) minus LightGBM, paired."""

    auc: dict[str, dict[str, Interval]]
    paired: dict[str, dict[str, Any]]
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        return {"interval": f"95% percentile bootstrap over test users, {self.resamples} resamples",
                "auc": {m: {t: i.to_dict() for t, i in row.items()} for m, row in self.auc.items()},
                "paired": {t: {**p, "difference": p["difference"].to_dict()}
                           for t, p in self.paired.items()}}


def compare(data: Data, results: list[Result], resamples: int = RESAMPLES) -> Comparison:
    users = data.tables["test"][data.config.data.user_column].to_numpy()
    weights = user_weights(users, resamples, seed=0)
    labels = data.batches["test"].labels.numpy()
    tasks = [(j, t.name) for j, t in enumerate(data.config.tasks) if t.type == "binary"]
    aucs: dict[str, dict[str, Interval]] = {}
    replicates: dict[tuple[str, str], np.ndarray] = {}
    for r in results:
        aucs[r.model] = {}
        for j, task in tasks:
            present = ~np.isnan(labels[:, j])
            estimate, reps = mean_auc(labels[present, j], [p[present, j] for p in r.test_preds],
                                      weights[:, present])
            aucs[r.model][task], replicates[r.model, task] = interval(estimate, reps), reps
    paired: dict[str, dict[str, Any]] = {}
    lightgbm = next((r for r in results if r.model.startswith("LightGBM")), None)
    ours = [r for r in results if r.model.startswith("watchnext")]
    if lightgbm is not None and ours:
        for _, task in tasks:
            best = max(ours, key=lambda r, task=task: r.valid[task]["auc"])
            difference = interval(aucs[best.model][task].estimate
                                  - aucs[lightgbm.model][task].estimate,
                                  replicates[best.model, task] - replicates[lightgbm.model, task])
            verdict = ("tie" if difference.covers_zero
                       else "watchnext leads" if difference.low > 0 else "LightGBM leads")
            paired[task] = {"watchnext": best.model, "difference": difference, "verdict": verdict}
    return Comparison(aucs, paired, resamples)


def interval_rows(comparison: Comparison, results: list[Result]
                  ) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """Table of test AUC [95% interval] per model and task (with the seeds' standard deviation),
    and the table of paired differences."""
    tasks = list(next(iter(comparison.auc.values())))
    header = ["model", *[f"test AUC {t} [95% CI]" for t in tasks]]
    rows = []
    for r in results:
        cells = []
        for t in tasks:
            i, by_seed = comparison.auc[r.model][t], r.test_auc_by_seed[t]
            sd = f", seed sd {np.std(by_seed, ddof=1):.4f}" if len(by_seed) > 1 else ""
            cells.append(f"{i.estimate:.4f} [{i.low:.3f}, {i.high:.3f}]{sd}")
        rows.append([r.model, *cells])
    paired_header = ["task", "best watchnext (validation AUC)", "watchnext - LightGBM [95% CI]",
                     "verdict"]
    paired_rows = [[t, p["watchnext"], f"{p['difference'].estimate:+.4f} "
                    f"[{p['difference'].low:+.3f}, {p['difference'].high:+.3f}]", p["verdict"]]
                   for t, p in comparison.paired.items()]
    return header, rows, paired_header, paired_rows


def write_outputs(out: Path, results: list[Result], command: str, tables: list[str],
                  comparison: Comparison) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"protocol": "kuairand-sample v1", "command": command,
               "selection": "mean validation AUC of " + ", ".join(KEY_TASKS),
               "comparison": comparison.to_dict(),
               "results": [_jsonable({k: v for k, v in asdict(r).items() if k != "test_preds"})
                           for r in results]}
    (out / "peers.json").write_text(json.dumps(payload, indent=2))
    settings = [f"- **{r.model}**: `{json.dumps(_jsonable(r.settings))}`" for r in results]
    text = ["# kuairand-sample v1: watchnext vs peers", "", f"Command: `{command}`", "",
            f"Training seeds {results[0].seeds}: every figure is the mean over seeds. "
            f"Intervals: {comparison.to_dict()['interval']}.", "",
            *[part for table in tables for part in (table, "")],
            "Selected settings (chosen on the validation day):", "", *settings, ""]
    (out / "peers.md").write_text("\n".join(text))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


RUNNERS: dict[str, tuple[str | None, Callable[[Data, bool, list[int]], Result]]] = {
    "mmoe": (None, lambda data, quick, seeds: run_watchnext(data, "mmoe", quick, seeds)),
    "shared_bottom": (None, lambda data, quick, seeds: run_watchnext(data, "shared_bottom", quick,
                                                                     seeds)),
    "ple": (None, lambda data, quick, seeds: run_watchnext(data, "ple", quick, seeds)),
    "lightgbm": ("lightgbm", run_lightgbm),
    "deepctr": ("deepctr_torch", run_deepctr),
}


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one setting per model (smoke run)")
    parser.add_argument("--out", default="runs/kuairand_peers", help="folder for peers.json/.md")
    parser.add_argument("--models", default=",".join(RUNNERS),
                        help=f"comma-separated subset of {', '.join(RUNNERS)}")
    parser.add_argument("--seeds", default="0,1,2",
                        help="training seeds, comma-separated (the grid is scored with the first)")
    parser.add_argument("--config", default=str(bundled_config("kuairand_v1")))
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    data = load_data(load_config(args.config))
    results = []
    for name in args.models.split(","):
        module, run = RUNNERS[name]
        if module and importlib.util.find_spec(module) is None:
            print(f"skipping {name}: {module} is not installed (pip install -e '.[bench]')")
            continue
        print(f"running {name} ...", flush=True)
        torch.manual_seed(seeds[0])
        results.append(run(data, args.quick, seeds))
    comparison = compare(data, results)
    header, rows = table_rows(results, data.config.task_names)
    ci_header, ci_rows, paired_header, paired_rows = interval_rows(comparison, results)
    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
    print()
    for h, r in ((header, rows), (ci_header, ci_rows), (paired_header, paired_rows)):
        if r:
            print(plain_table(h, r), end="\n\n")
    for r in results:
        print(f"selected for {r.model}: {json.dumps(_jsonable(r.settings))}")
    tables = [markdown_table(h, r) for h, r in ((header, rows), (ci_header, ci_rows),
                                               (paired_header, paired_rows)) if r]
    write_outputs(Path(args.out), results, command, tables, comparison)
    return results


if __name__ == "__main__":
    main()

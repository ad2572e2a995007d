"""Settings for the sparse satisfaction tasks of kuairand-sample v1, chosen on the validation day.

    .venv/bin/python benchmarks/kuairand_sparse_selection.py --variants base,follow_w3 --seeds 0,1,2

Each variant is a set of overrides on the bundled ``kuairand_v1`` config (``VARIANTS`` below);
each is trained once per seed on the train days (early stopping on the validation day, as the
peers benchmark does) and scored on the validation day only: the test days are never read.
Seeds matter: with 16 follow and 15 forward positives on the validation day, a single training
seed moves their AUC by more than most settings do, so every variant is averaged over seeds.

Prints, per variant, the mean and standard deviation over seeds of each task's validation AUC
and of the best epoch; every run goes to ``--out``/selection.json (appended, so runs add up).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from watchnext.api import Ranker
from watchnext.config import RunConfig, load_config
from watchnext.data.datasets import load_dataset
from watchnext.evaluate.metrics import auc
from watchnext.evaluate.tables import markdown_table
from watchnext.workflows import bundled_config

HEADLINE = ("click", "long_view", "like")
SPARSE = ("comment", "follow", "forward")
PLE = {"kind": "ple", "ple_layers": 2, "task_experts": 1, "shared_experts": 2,
       "expert_units": [48]}

# name -> overrides: section dicts as RunConfig.replace takes them, and "tasks": {name: fields}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "ple": {"model": PLE},
    "sparse_w03": {"tasks": {t: {"loss_weight": 0.3} for t in SPARSE}},
    "sparse_w3": {"tasks": {t: {"loss_weight": 3.0} for t in SPARSE}},
    "sparse_w10": {"tasks": {t: {"loss_weight": 10.0} for t in SPARSE}},
    "sparse_pos10": {"tasks": {t: {"positive_weight": 10.0} for t in SPARSE}},
    "sparse_pos30": {"tasks": {t: {"positive_weight": 30.0} for t in SPARSE}},
    "tower64": {"model": {"tower_units": [64]}},
    "tower0": {"model": {"tower_units": []}},
    "dropout03": {"model": {"dropout": 0.3}},
    "wd1e4": {"train": {"weight_decay": 1e-4}},
    "wd1e3": {"train": {"weight_decay": 1e-3}},
    "lr1e3": {"train": {"learning_rate": 1e-3}},
    "patience4": {"train": {"patience": 4}},
}


def combined(name: str) -> dict[str, Any]:
    """The overrides of ``a+b+...``: each variant's merged into the previous ones', section by
    section (and task by task)."""
    out: dict[str, Any] = {}
    for part in name.split("+"):
        for key, value in VARIANTS[part].items():
            if key == "tasks":
                tasks = out.setdefault("tasks", {})
                for task, fields in value.items():
                    tasks[task] = {**tasks.get(task, {}), **fields}
            else:
                out[key] = {**out.get(key, {}), **value}
    return out


def apply(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """The config with section overrides, and per-task field overrides under ``"tasks"``."""
    sections = {k: v for k, v in overrides.items() if k != "tasks"}
    per_task = overrides.get("tasks", {})
    if per_task:
        raw = config.to_dict()["tasks"]
        sections["tasks"] = [{**t, **per_task.get(t["name"], {})} for t in raw]
    return config.replace(**sections)


def run_variant(config: RunConfig, tables: dict[str, Any], seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    config = config.replace(train={"seed": seed, "progress": False})
    ranker = Ranker(config).fit(tables["train"], tables["valid"])
    preds = ranker.predict(tables["valid"])
    labels = ranker.encode(tables["valid"]).labels.numpy()
    aucs = {t.name: auc(labels[:, j], preds[:, j])
            for j, t in enumerate(config.tasks) if t.type == "binary"}
    return {"seed": seed, "valid_auc": aucs, "best_epoch": ranker.history[0].best_epoch + 1,
            "valid_losses": ranker.history[0].valid, "seconds": time.perf_counter() - started}


def summary(name: str, runs: list[dict[str, Any]]) -> str:
    """Per task mean ± sd over seeds; then the mean over the headline and over the sparse tasks
    (± its standard error over seeds): what a variant is judged by."""
    cells = []
    for t in runs[0]["valid_auc"]:
        values = np.array([r["valid_auc"][t] for r in runs])
        cells.append(f"{t} {values.mean():.4f}±{_sd(values):.4f}")
    for label, tasks in (("headline", HEADLINE), ("sparse", SPARSE)):
        values = np.array([np.mean([r["valid_auc"][t] for t in tasks]) for r in runs])
        cells.append(f"{label} {values.mean():.4f}±{_sd(values) / np.sqrt(len(values)):.4f}")
    epochs = [r["best_epoch"] for r in runs]
    return f"{name:14s} " + "  ".join(cells) + f"  epochs {epochs}"


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def report(path: Path) -> None:
    """A Markdown table of every variant recorded in ``path`` (selection.json): per task the
    mean ± sd over seeds; the headline and sparse means ± their standard error over seeds."""
    records = json.loads(path.read_text())
    tasks = list(records[0]["runs"][0]["valid_auc"])
    header = ["history transform", "variant", *tasks, "headline mean", "sparse mean", "best epochs"]
    rows = []
    for record in records:
        runs = record["runs"]
        cells = [f"{np.mean(v):.4f} ± {_sd(v):.4f}"
                 for v in (np.array([r["valid_auc"][t] for r in runs]) for t in tasks)]
        for group in (HEADLINE, SPARSE):
            v = np.array([np.mean([r["valid_auc"][t] for t in group]) for r in runs])
            cells.append(f"{v.mean():.4f} ± {_sd(v) / np.sqrt(len(v)):.4f}")
        rows.append([record.get("history_transforms", ["standardize"])[0], record["variant"],
                     *cells, ", ".join(str(r["best_epoch"]) for r in runs)])
    print(markdown_table(header, rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="base",
                        help=f"comma-separated, each one of {', '.join(VARIANTS)} or a+b")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--out", default="runs/kuairand_sparse_selection")
    parser.add_argument("--config", default=str(bundled_config("kuairand_v1")))
    parser.add_argument("--report", action="store_true", help="only summarise --out's runs")
    args = parser.parse_args(argv)
    if args.report:
        report(Path(args.out) / "selection.json")
        return
    torch.set_num_threads(1)
    base = load_config(args.config)
    tables = load_dataset(base.data.dataset, base)
    tables.pop("test")  # never read the test days here
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = out / "selection.json"
    runs = json.loads(record.read_text()) if record.exists() else []
    for name in args.variants.split(","):
        config = apply(base, combined(name))
        results = [run_variant(config, tables, int(s)) for s in args.seeds.split(",")]
        runs.append({"variant": name, "overrides": combined(name), "config": args.config,
                     "history_transforms": [h.transform for h in base.history], "runs": results})
        record.write_text(json.dumps(runs, indent=1))
        print(summary(name, results), flush=True)


if __name__ == "__main__":
    main()

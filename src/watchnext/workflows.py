"""End-to-end jobs behind the CLI: train, evaluate, inspect and the demo, as plain functions."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.api import Ranker
from watchnext.artifacts.checkpoint import write_json
from watchnext.config import RunConfig, load_config
from watchnext.data.datasets import load_dataset, open_bandit
from watchnext.data.io import read_tables
from watchnext.evaluate import tables
from watchnext.evaluate.bias import ALL_DEVICES
from watchnext.evaluate.bias_audit import columns_from_config, read_log
from watchnext.evaluate.bias_audit_report import Audit, run_audit
from watchnext.model.cost import match_cost

Log = Callable[[str], None]


def bundled_config(name: str) -> Path:
    """Path of a ready config shipped with the package (e.g. ``kuairand_v1``)."""
    return Path(str(resources.files("watchnext.configs") / f"{name}.toml"))


def load_splits(config: RunConfig) -> dict[str, pa.Table]:
    """The run's data: a bundled protocol (``data.dataset``) or the train/valid/test paths."""
    if config.data.dataset:
        return load_dataset(config.data.dataset)
    return {split: read_tables(paths) for split in ("train", "valid", "test")
            if (paths := getattr(config.data, split))}


def day_chunks(table: pa.Table, day_column: str) -> list[tuple[str, pa.Table]]:
    """A table cut into time-ordered chunks, one per distinct value of ``day_column``."""
    days = sorted(set(table[day_column].to_pylist()))
    return [(str(d), table.filter(pc.equal(table[day_column], d))) for d in days]


def train(config_path: str | Path, out: str | Path, *, sequential: bool = False, resume: bool = False,
          progress: bool = True, log: Log = print) -> dict[str, Any]:
    """Train from a config; save OUT/model and OUT/metrics.json; return the test report."""
    config = load_config(config_path).replace(train={"progress": progress})
    out = Path(out)
    splits = load_splits(config)
    ranker = Ranker(config, log=log)
    started = time.perf_counter()
    if sequential:
        if not config.data.day_column:
            raise ValueError("--sequential needs data.day_column in the config")
        ranker.fit_sequential(day_chunks(splits["train"], config.data.day_column), out / "run",
                              splits.get("valid"), resume=resume)
    else:
        ranker.fit(splits["train"], splits.get("valid"))
    seconds = time.perf_counter() - started
    model_dir = ranker.save(out / "model")
    metrics = {name: ranker.evaluate(splits[name]) for name in ("valid", "test") if name in splits}
    write_json(out / "metrics.json", {"train_seconds": seconds, **metrics})
    return {"name": config.name, "model_dir": model_dir,
            "report": metrics.get("test") or metrics.get("valid")}


def evaluate(model_dir: str | Path, data: list[Path] | None = None,
             json_out: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a saved model on files, or on its config's test split."""
    ranker = Ranker.load(model_dir)
    table = read_tables([str(p) for p in data]) if data else load_splits(ranker.config)["test"]
    report = ranker.evaluate(table)
    if json_out:
        write_json(json_out, report)
    return report


def inspect(model_dir: str | Path) -> dict[str, Any]:
    """Cost, and gates + position bias measured on the config's validation data."""
    ranker = Ranker.load(model_dir)
    splits = load_splits(ranker.config)
    data = splits.get("valid") or splits.get("test")
    return ranker.evaluate(data) if data is not None else {
        "cost": ranker.cost(), "model": ranker.config.model.kind}


def bias_audit(logs: list[Path], config_path: str | Path | None = None,
               model_dir: str | Path | None = None, replicates: int = 200, seed: int = 0,
               pbm: bool = True, **columns: str | None) -> Audit:
    """``watchnext bias``: audit the position effect in impression logs (docs/bias-audit.md).

    Columns come from the run config (or the model's), overridden by ``columns``; with a model,
    its shallow tower's learned click curve is checked against the estimators' intervals.
    """
    ranker = Ranker.load(model_dir) if model_dir else None
    config = load_config(config_path) if config_path else ranker.config if ranker else None
    cols = columns_from_config(config, **columns)
    log = read_log(read_tables([str(p) for p in logs]), cols)
    tower, note = None, ""
    if ranker is not None:
        learned = ranker.learned_bias()
        tasks = {t.name: t.label for t in ranker.config.tasks if t.name in learned}
        task = next((name for name, label in tasks.items() if label == cols.click),
                    next(iter(tasks), None))
        tower = learned.get(task) if task else None
        note = f"tower: task {task!r} of {model_dir}" if tower else \
            f"tower: {model_dir} has no shallow tower to compare"
    audit = run_audit(log, replicates, seed, pbm, tower)
    if note:
        audit.notes.append(note)
    return audit


def equal_cost_pair(config: RunConfig, train_table: pa.Table) -> dict[str, RunConfig]:
    """MMoE as configured, and a SharedBottom resized to the same multiplications per example.

    The SharedBottom gets one more bottom layer (the width of the experts' output), resized.
    """
    mmoe = config.replace(model={"kind": "mmoe"})
    probe = Ranker(mmoe)
    probe._build(train_table)
    target = probe.cost()["serving"]
    units = [*mmoe.model.bottom_units, mmoe.model.expert_units[-1]]
    shared = mmoe.replace(model={"kind": "shared_bottom", "bottom_units": units})
    return {"SharedBottom": match_cost(shared, probe.encoder, target), "MMoE": mmoe}


def demo(out: str | Path, progress: bool = True, log: Log = print) -> dict[str, Any]:
    """The README's main job: two models at equal cost on kuairand-sample v1, then Open Bandit."""
    out = Path(out)
    config = load_config(bundled_config("kuairand_v1")).replace(train={"progress": progress})
    splits = load_splits(config)
    reports = {}
    for name, cfg in equal_cost_pair(config, splits["train"]).items():
        log(f"[bold]training {name}[/]")
        started = time.perf_counter()
        ranker = Ranker(cfg, log=log).fit(splits["train"], splits["valid"])
        reports[name] = ranker.evaluate(splits["test"])
        reports[name]["train_seconds"] = round(time.perf_counter() - started, 1)
        ranker.save(out / name)
    bandit = open_bandit_bias(progress=progress, log=log)
    report_path = write_demo_report(out, reports, bandit)
    return {"reports": reports, "open_bandit": bandit,
            "open_bandit_rows": open_bandit_rows(bandit), "report_path": report_path}


def open_bandit_bias(progress: bool = True, log: Log = print) -> dict[str, Any]:
    """Train on the Thompson-sampling log; compare the learned bias to the random log's CTRs."""
    config = load_config(bundled_config("open_bandit")).replace(train={"progress": progress})
    splits = load_splits(config)
    log("[bold]training on open-bandit-small (bts), checking against the random log[/]")
    ranker = Ranker(config, log=log).fit(splits["train"], splits["valid"])
    report = ranker.evaluate(splits["test"])
    curve = ranker.learned_bias()["click"].curves[ALL_DEVICES]
    return {"learned_bias": curve, "random_click_rate": open_bandit.click_rate_by_position(
        splits["test"]), "test_auc": report["tasks"]["click"]["auc"]}


def open_bandit_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per position: learned bias, exp(bias - bias_1), the random log's CTR and CTR / CTR_1."""
    bias, rates = result["learned_bias"], result["random_click_rate"]
    first = rates[min(rates)]["click_rate"]
    header = ["position", "learned bias", "exp(bias - bias_1)", "random-log CTR", "CTR / CTR_1",
              "rows"]
    rows = [[str(p), f"{bias[p]:+.3f}", f"{math.exp(bias[p] - bias[1]):.3f}",
             f"{r['click_rate']:.4f}", f"{r['click_rate'] / first:.3f}", str(r["rows"])]
            for p, r in sorted(rates.items())]
    return header, rows


def write_demo_report(out: Path, reports: dict[str, Any], bandit: dict[str, Any]) -> Path:
    """REPORT.md + report.json in ``out``."""
    header, rows = tables.comparison_rows(reports)
    lines = ["# watchnext demo report", "",
             "## kuairand-sample v1: SharedBottom vs MMoE at equal multiplications (test split)", "",
             tables.markdown_table(header, rows), "",
             "Training seconds: " + ", ".join(f"{k} {v['train_seconds']}" for k, v in reports.items()),
             ""]
    gate_header, gate_rows = tables.experts_rows(reports["MMoE"])
    lines += ["## MMoE expert utilisation (mean gate weight, test split)", "",
              tables.markdown_table(gate_header, gate_rows), ""]
    b_header, b_rows = open_bandit_rows(bandit)
    lines += ["## open-bandit-small: learned position bias vs the random-policy click rate", "",
              tables.markdown_table(b_header, b_rows), "",
              f"Click AUC on the random log: {bandit['test_auc']:.4f}", ""]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    write_json(out / "report.json", {"kuairand": reports, "open_bandit": _jsonable(bandit)})
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def dump(report: dict[str, Any]) -> str:
    return json.dumps(_jsonable(report), indent=2)

"""End-to-end jobs behind the CLI: train, evaluate, inspect, the demo and a service build, as plain
functions."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from watchnext.api import History, Ranker
from watchnext.artifacts.checkpoint import resolve, write_json
from watchnext.config import ConfigError, RunConfig, load_config
from watchnext.data import sources
from watchnext.data.datasets import open_bandit
from watchnext.data.io import read_tables, write_parquet_atomic
from watchnext.evaluate import html, schema, tables
from watchnext.evaluate.bias import ALL_DEVICES
from watchnext.evaluate.bias_audit import columns_from_config, read_log
from watchnext.evaluate.bias_audit_report import Audit, run_audit
from watchnext.model.cost import match_cost
from watchnext.model.load import LoadedModel
from watchnext.train import recovery
from watchnext.train.loop import METRICS

Log = Callable[[str], None]


def bundled_config(name: str) -> Path:
    """Path of a ready config shipped with the package (e.g. ``kuairand_v1``)."""
    return Path(str(resources.files("watchnext.configs") / f"{name}.toml"))


def day_chunks(table: pa.Table, day_column: str) -> list[tuple[str, pa.Table]]:
    """A table cut into time-ordered chunks, one per distinct value of ``day_column``."""
    days = sorted(set(table[day_column].to_pylist()))
    return [(str(d), table.filter(pc.equal(table[day_column], d))) for d in days]


def train(config_path: str | Path, out: str | Path, *, sequential: bool = False, resume: bool = False,
          progress: bool = True, log: Log = print) -> dict[str, Any]:
    """Train from a config; save OUT/model, OUT/metrics.json (a ``Report``) and OUT/report.html."""
    config = load_config(config_path).replace(train={"progress": progress})
    out = Path(out)
    splits = sources.load_splits(config)
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
    evaluations = {name: schema.evaluation(ranker.evaluate(splits[name]), f"{name} split")
                   for name in ("valid", "test") if name in splits}
    report = schema.Report("train", {config.name: ranker.model_report(evaluations, seconds)})
    write_json(out / "metrics.json", report.to_json())
    html_path = html.write_html(out / "report.html", report)
    return {"name": config.name, "model_dir": model_dir, "report": report, "html": html_path}


def evaluate(model_dir: str | Path, data: list[Path] | None = None) -> schema.Report:
    """Evaluate a saved model on files (``data``), or on its config's test split (``test``); the
    training history comes from the run's ``metrics.json`` (see ``saved_training``)."""
    ranker = Ranker.load(model_dir)
    if data:
        return _loaded_report("evaluate", ranker, model_dir, data)
    table = sources.load_splits(ranker.config).get("test")
    if table is None:
        raise ConfigError("data.test: the config has no test split; pass --data FILES")
    return _loaded_report("evaluate", ranker, model_dir, None, ("test", "test split", table))


def inspect(model_dir: str | Path, data: list[Path] | None = None) -> schema.Report:
    """What needs no data (config, cost, learned bias, and the training history of the run's
    ``metrics.json``, see ``saved_training``), and with ``data`` the gates and metrics."""
    return _loaded_report("inspect", Ranker.load(model_dir), model_dir, data)


def _loaded_report(command: str, ranker: Ranker, model_dir: str | Path, data: list[Path] | None,
                   split: tuple[str, str, pa.Table] | None = None) -> schema.Report:
    """The report of a saved model: evaluated on ``data`` files or on ``split`` (name, label,
    table) if given, with the training history its run left (``saved_training``)."""
    if data:
        split = ("data", ", ".join(str(p) for p in data), read_tables([str(p) for p in data]))
    evaluations = {}
    if split is not None:
        name, label, table = split
        evaluations[name] = schema.evaluation(ranker.evaluate(table), label)
    model = ranker.model_report(evaluations)
    model.training = saved_training(model_dir, model.name)
    return schema.Report(command, {ranker.config.name: model})


def saved_training(model_dir: str | Path, name: str) -> schema.Training | None:
    """The training history of checkpoint ``model_dir`` (or of a run folder's LATEST), from the
    ``metrics.json`` its run left, and ``source`` saying which file that was:

    - a step checkpoint ``RUN/checkpoints/step-N`` (``train-stream``, ``fit_sequential``): the
      run's ``RUN/metrics.json``, its per-day records cut to the days that checkpoint had
      finished (the run may have gone on after it);
    - any other model folder (``train``'s ``OUT/model``): the train report beside it,
      ``OUT/metrics.json``, model ``name``.

    None when there is no such file or it cannot be read: the history is optional in a report.
    """
    checkpoint = resolve(model_dir)
    run = recovery.run_folder(checkpoint)
    if run is None:
        return _report_training(checkpoint.parent / METRICS, name)
    return _run_training(run / METRICS, checkpoint)


def _report_training(path: Path, name: str) -> schema.Training | None:
    try:
        saved = schema.Report.from_json(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
    model = saved.models.get(name)
    if model is None or model.training is None:
        return None
    return replace(model.training, source=str(path))


def _run_training(path: Path, checkpoint: Path) -> schema.Training | None:
    try:
        days = json.loads(path.read_text())["days"]
        state = json.loads((checkpoint / "state.json").read_text())
        done, epochs = set(state["days_done"]), state["data_order"]["epochs_per_day"]
        finished = [d for d in days if d["day"] in done]
        histories = [History.from_day(d) for d in finished]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not histories:
        return None
    seconds = sum(d.get("seconds") or 0.0 for d in finished)
    training = schema.training(histories, epochs, seconds, chunks=[d["day"] for d in finished])
    return replace(training, source=f"{path} ({len(finished)} day(s) finished by "
                                     f"{checkpoint.name})")


def score(model_dir: str | Path, data: list[Path], out: str | Path, *, with_position: bool = False,
          exponents: dict[str, float] | None = None, keep: list[str] | None = None
          ) -> dict[str, Any]:
    """Write per-row predictions of every task and the combined score to Parquet (row order kept).

    The config's request, user and day columns are kept where the data has them, then ``keep``.
    """
    ranker = Ranker.load(model_dir)
    table = read_tables([str(p) for p in data])
    d = ranker.config.data
    keys = [c for c in (d.request_column, d.user_column, d.day_column) if c and c in
            table.column_names]
    keys += [c for c in keep or [] if c not in keys]
    scored = ranker.predict_table(table, with_position=with_position, exponents=exponents,
                                  keep=keys)
    write_parquet_atomic(scored, out)
    tasks = [t.name for t in ranker.config.tasks]
    return {"out": str(out), "rows": scored.num_rows, "columns": scored.column_names,
            "with_position": with_position,
            "exponents": dict(zip(tasks, ranker.exponents(exponents), strict=True)),
            "mean": {c: _mean(scored[c]) for c in [*tasks, "score"]}}


def _mean(column: pa.ChunkedArray) -> float | None:
    value = pc.mean(column).as_py()
    return None if value is None else schema.significant(value)


def build_service(config: RunConfig, train: pa.Table, out_dir: str | Path, *,
                  valid: pa.Table | None = None, overwrite: bool = False, log: Log = print,
                  **options: Any) -> Path:
    """Train a ranker on ``train`` (early stopping on ``valid``), then write a servable model
    directory from it; retrieval and the feature store read ``train`` and ``valid`` together, the
    freshest logs at build time. ``options`` go to ``watchnext.serve.model_dir.build_model_dir``.
    """
    from watchnext.serve.model_dir import build_model_dir, refuse_existing

    refuse_existing(out_dir, overwrite)  # before training, not after
    log(f"training {config.model.kind} ranker on {train.num_rows:,} rows")
    ranker = Ranker(config, log=log).fit(train, valid)
    trained = LoadedModel(ranker.config, ranker.encoder, ranker.model, {"global_step": ranker.global_step})
    logs = train if valid is None else pa.concat_tables([train, valid], promote_options="permissive")
    return build_model_dir(trained, logs, out_dir, overwrite=overwrite, log=log, **options)


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
    """The README's main job: two models at equal cost on kuairand-sample v1, then Open Bandit.

    Writes OUT/report.json (a ``Report``), OUT/report.html and OUT/REPORT.md.
    """
    out = Path(out)
    config = load_config(bundled_config("kuairand_v1")).replace(train={"progress": progress})
    splits = sources.load_splits(config)
    models = {}
    for name, cfg in equal_cost_pair(config, splits["train"]).items():
        log(f"[bold]training {name}[/]")
        started = time.perf_counter()
        ranker = Ranker(cfg, log=log).fit(splits["train"], splits["valid"])
        seconds = round(time.perf_counter() - started, 1)
        evaluations = {"test": schema.evaluation(ranker.evaluate(splits["test"]),
                                                 "kuairand-sample v1 test split (2022-04-19..21)")}
        models[name] = ranker.model_report(evaluations, seconds)
        ranker.save(out / name)
    bandit = open_bandit_bias(progress=progress, log=log)
    models["OpenBandit"] = bandit["model"]
    extra = {k: v for k, v in bandit.items() if k != "model"}
    report = schema.Report("demo", models, extra={"open_bandit": extra})
    report_path = write_demo_report(out, report, bandit)
    return {"report": report, "open_bandit": bandit, "open_bandit_rows": open_bandit_rows(bandit),
            "report_path": report_path, "html": out / "report.html"}


def open_bandit_bias(progress: bool = True, log: Log = print) -> dict[str, Any]:
    """Train on the Thompson-sampling log; compare the learned bias to the random log's CTRs.

    ``model`` is the trained model's report entry (evaluated on the random log).
    """
    config = load_config(bundled_config("open_bandit")).replace(train={"progress": progress})
    splits = sources.load_splits(config)
    log("[bold]training on open-bandit-small (bts), checking against the random log[/]")
    started = time.perf_counter()
    ranker = Ranker(config, log=log).fit(splits["train"], splits["valid"])
    seconds = round(time.perf_counter() - started, 1)
    report = ranker.evaluate(splits["test"])
    curve = ranker.learned_bias()["click"].curves[ALL_DEVICES]
    model = ranker.model_report({"random_log": schema.evaluation(report, "uniform-random log")},
                                seconds)
    return {"learned_bias": curve, "random_click_rate": open_bandit.click_rate_by_position(
        splits["test"]), "test_auc": report["tasks"]["click"]["auc"], "model": model}


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


def write_demo_report(out: Path, report: schema.Report, bandit: dict[str, Any]) -> Path:
    """REPORT.md, report.json and report.html in ``out``."""
    header, rows = tables.metrics_rows(report.models, "test")
    lines = ["# watchnext demo report", "",
             "## kuairand-sample v1: SharedBottom vs MMoE at equal multiplications (test split)", "",
             tables.markdown_table(header, rows), "",
             "Training seconds: " + ", ".join(f"{k} {m.training.seconds}" for k, m in
                                              report.models.items() if m.training), ""]
    gate_header, gate_rows = tables.experts_rows({"experts": report.models["MMoE"]
                                                  .evaluations["test"].experts})
    lines += ["## MMoE expert utilisation (mean gate weight, test split)", "",
              tables.markdown_table(gate_header, gate_rows), ""]
    b_header, b_rows = open_bandit_rows(bandit)
    lines += ["## open-bandit-small: learned position bias vs the random-policy click rate", "",
              tables.markdown_table(b_header, b_rows), "",
              f"Click AUC on the random log: {bandit['test_auc']:.4f}", ""]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    write_json(out / "report.json", report.to_json())
    html.write_html(out / "report.html", report)
    return path

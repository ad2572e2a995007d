"""Live experiments in the simulated world: ``run_experiment(config, out_dir)``.

Every kind starts the same way: the logging policy serves ``logging.days`` days, written as
Parquet partitioned by day; the arms train on all days but the last (the validation day); then
fresh traffic of the following day (a separate random stream) is served by every arm with common
random numbers. What follows depends on ``kind``:

    arms          every arm trained ``replicates`` times; lifts of every live metric vs control
                  with 95% intervals that include training noise, truth checks    (Tables 1, 2)
    polarisation  each arm trained over several seeds: how often a gate polarises
    sweep         one model, a grid of combination exponents: the true Pareto front
    feedback      each arm retrains on its own logs for several rounds
"""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import torch

from watchnext.config import ConfigError
from watchnext.sim.ab import run_arms
from watchnext.sim.experiment_config import Experiment, load_experiment
from watchnext.sim.feedback import run_feedback
from watchnext.sim.polarisation import run_polarisation
from watchnext.sim.setup import Log, Setup, prepare
from watchnext.sim.sweep import run_sweep

RUNNERS: dict[str, Callable[[Setup], tuple[dict[str, Any], str]]] = {
    "arms": run_arms, "polarisation": run_polarisation, "sweep": run_sweep, "feedback": run_feedback,
}


def with_seed(experiment: Experiment, seed: int) -> Experiment:
    """The same experiment with another seed (world, traffic and training)."""
    return dataclasses.replace(experiment, config=dataclasses.replace(experiment.config, seed=seed),
                               world=dataclasses.replace(experiment.world, seed=seed))


def with_replicates(experiment: Experiment, replicates: int) -> Experiment:
    """The same experiment trained ``replicates`` times per arm (``polarisation``: seeds per arm)."""
    cfg = experiment.config
    if replicates < 1:
        raise ConfigError(f"--replicates: must be >= 1, got {replicates}")
    if cfg.kind == "arms":
        cfg = dataclasses.replace(cfg, replicates=replicates)
    elif cfg.kind == "polarisation":
        cfg = dataclasses.replace(cfg, polarisation=dataclasses.replace(cfg.polarisation,
                                                                        seeds=replicates))
    else:
        raise ConfigError(f"--replicates: a {cfg.kind} experiment trains one model per arm "
                          "(only arms and polarisation experiments take replicates)")
    return dataclasses.replace(experiment, config=cfg)


def run_experiment(config: str | Path | Experiment, out_dir: str | Path, seed: int | None = None,
                   log: Log = print, replicates: int | None = None, jobs: int = 1
                   ) -> dict[str, Any]:
    """Run an experiment config; write results.json, table.md and PNG plots to ``out_dir``.

    ``seed`` replaces the config's seed (world, traffic, training); ``replicates`` its number of
    trainings per arm (seeds per arm for ``polarisation``); ``jobs`` trainings run at once in
    worker processes (arms and polarisation; the results do not depend on it).
    ``results["seconds"]`` is the wall time, ``results["cpu_seconds"]`` the CPU time of this
    process and its workers (all threads).
    """
    experiment = config if isinstance(config, Experiment) else load_experiment(config)
    if seed is not None:
        experiment = with_seed(experiment, seed)
    if replicates is not None:
        experiment = with_replicates(experiment, replicates)
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    threads = torch.get_num_threads()
    try:
        setup = prepare(experiment, out, log, jobs)
        results, markdown = RUNNERS[experiment.config.kind](setup)
    finally:
        torch.set_num_threads(threads)
    results = {**preamble(setup), **results, "seconds": round(time.perf_counter() - started, 1),
               "cpu_seconds": round(_cpu_seconds() - cpu_started, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    (out / "table.md").write_text(markdown)
    log(f"wrote {out / 'table.md'}, results.json and plots in {results['seconds']:.0f}s wall, "
        f"{results['cpu_seconds']:.0f}s CPU")
    return results


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the training workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def preamble(setup: Setup) -> dict[str, Any]:
    cfg = setup.experiment.config
    return {
        "experiment": cfg.name, "kind": cfg.kind, "description": cfg.description, "seed": cfg.seed,
        "replicates": cfg.replicates if cfg.kind == "arms" else None, "jobs": setup.jobs,
        "config": dataclasses.asdict(cfg), "world": dataclasses.asdict(setup.world.config),
        "logging": {"dates": setup.dates, "train_rows": setup.train.num_rows,
                    "valid_rows": setup.valid.num_rows,
                    "click_rate": float(pc.mean(setup.train["click"]).as_py())},
        "evaluation": {"requests": int(setup.traffic.shape[0]),
                       "date": setup.world.config.date(setup.traffic.day)},
        "reference_cost": setup.cost_reference,
    }


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

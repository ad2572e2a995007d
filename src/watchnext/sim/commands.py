"""CLI commands of the simulator (``watchnext experiment``, ``watchnext simulate``).

Both only wrap the Python API: ``watchnext.sim.experiment.run_experiment`` and
``watchnext.sim.simulate.simulate_logs``. The heavy modules (torch) load inside the commands, so
``watchnext --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import os
from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown

from watchnext.config import ConfigError
from watchnext.data.errors import DataError

console = Console()


def bundled(name: str, prefix: str) -> Path:
    """A config path: an existing file, or a ready config shipped with the package by short name
    (``table2`` -> ``configs/experiment_table2.toml``)."""
    path = Path(name)
    if path.exists() or path.suffix == ".toml":
        return path
    configs = resources.files("watchnext.configs")
    for candidate in (f"{prefix}{name}.toml", f"{name}.toml"):
        if (configs / candidate).is_file():
            return Path(str(configs / candidate))
    ready = sorted(p.name[len(prefix):-5] for p in configs.iterdir()
                   if p.name.startswith(prefix) and p.name.endswith(".toml"))
    raise ConfigError(f"{name}: no such config file or ready config (ready: {', '.join(ready)})")


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


def experiment(
    config: str = typer.Argument(..., help="Experiment TOML, or a ready one: table1, table2, "
                                           "tower_engagement, gate_dropout, weights, feedback, "
                                           "sources."),
    out: Path = typer.Option(None, help="Output folder (default: runs/<config name>)."),
    seed: int = typer.Option(None, help="Override the config's seed (world, traffic, training)."),
    replicates: int = typer.Option(None, help="Trainings per arm (training seeds), overriding the "
                                              "config's `replicates`; seeds per arm for gate_dropout. "
                                              "More replicates: narrower intervals, longer runs."),
    jobs: int = typer.Option(0, min=0, help="Trainings run at once in worker processes "
                                            "(0: one per CPU core). Results do not depend on it."),
) -> None:
    """Run a live A/B experiment in the simulated world; writes table.md, results.json, plots.

    Arms serve identical traffic (common random numbers); each arm is trained `replicates` times
    and lifts vs control come with 95% intervals that include that training noise; every model
    is checked against the world's hidden truth.
    """
    from watchnext.sim.experiment import run_experiment

    try:
        path = bundled(config, "experiment_")
        out = out or Path("runs") / path.stem.removeprefix("experiment_")
        run_experiment(path, out, seed=seed, log=console.print, replicates=replicates,
                       jobs=jobs or len(os.sched_getaffinity(0)))
    except (ConfigError, DataError, FileNotFoundError) as exc:
        _fail(exc)
    table = (out / "table.md").read_text()
    if console.is_terminal:  # rendered; piped or logged, the Markdown itself (no cut cells)
        console.print(Markdown(table))
    else:
        console.print(table, markup=False, highlight=False, soft_wrap=True)


def simulate(
    out: Path = typer.Option(..., help="Folder for the logs (day=YYYY-MM-DD/ partitions)."),
    world: str = typer.Option("sim_world", help="World TOML, or a ready one (sim_world)."),
    days: int = typer.Option(3, min=1, help="Simulated days to log."),
    requests: int = typer.Option(10000, min=1, help="Requests per day."),
    policy: str = typer.Option("popularity", help="Logging policy: random or popularity."),
    epsilon: float = typer.Option(0.2, min=0.0, max=1.0, help="Share of requests shown a random slate."),
    seed: int = typer.Option(None, help="Override the world's seed."),
) -> None:
    """Write impression logs of the simulated world in the trainer's schema (Parquet by day)."""
    from watchnext.sim.experiment_config import LoggingSpec
    from watchnext.sim.simulate import simulate_logs
    from watchnext.sim.world import World
    from watchnext.sim.world_config import load_world

    try:
        cfg = load_world(bundled(world, ""))
        if seed is not None:
            cfg = dataclasses.replace(cfg, seed=seed)
        if policy not in ("random", "popularity"):
            raise ConfigError(f"--policy: {policy!r} is not one of random, popularity")
        spec = LoggingSpec(policy=policy, epsilon=epsilon, days=days, requests_per_day=requests)
        simulate_logs(World(cfg), spec, out, log=console.print)
    except (ConfigError, DataError) as exc:
        _fail(exc)
    console.print(f"logs: {out}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main CLI."""
    app.command()(experiment)
    app.command()(simulate)

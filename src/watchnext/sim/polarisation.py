"""The gate-health kind: train each arm over several seeds and count polarised gates.

The paper saw about 20% of distributed runs polarise (a task's gate collapsing onto one expert)
and fixed it with gate dropout. Here every arm is trained ``polarisation.seeds`` times on the same
logs with different training seeds; a run is polarised when some task's mean gate weight on one
expert reaches ``evaluate.report.POLARISED`` on the validation day.

With two arms (the config's: gate dropout on and off) the rates are compared with a one-sided
Fisher exact test (does the arm with less gate dropout polarise more often?), and the table
states the test's power to detect the paper's difference (20% of runs vs none) at this number of
seeds, so a "no difference" is read with the power it had.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from watchnext.evaluate.report import POLARISED
from watchnext.evaluate.tables import markdown_table
from watchnext.sim import measure, plots, report
from watchnext.sim.arms import serve_arm
from watchnext.sim.experiment_config import training_seed
from watchnext.sim.parallel import run_tasks
from watchnext.sim.setup import Setup
from watchnext.sim.stats import fisher_exact_greater, fisher_power
from watchnext.stats import wilson


def effective_experts(mean_gate: list[float]) -> float:
    """exp(entropy) of a task's mean gate: n when uniform over n experts, 1 when polarised."""
    p = np.asarray(mean_gate, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def run_polarisation(setup: Setup) -> tuple[dict[str, Any], str]:
    cfg = setup.experiment.config
    specs = [a for a in cfg.arms if a.policy == "model"]
    tasks = [(replicate, spec.name) for spec in specs for replicate in range(cfg.polarisation.seeds)]
    done = {}
    for (replicate, name), run in run_tasks(setup, train_one_seed, tasks):
        done[(replicate, name)] = run
        setup.log(f"{name}, seed {run['seed']}: {'polarised' if run['polarised'] else 'healthy'}; "
                  f"done {len(done)}/{len(tasks)}")
    arms: dict[str, Any] = {}
    for spec in specs:
        runs = [done[(replicate, spec.name)] for replicate in range(cfg.polarisation.seeds)]
        model = runs[0]["model"]
        runs = [{k: v for k, v in run.items() if k != "model"} for run in runs]
        count = sum(r["polarised"] for r in runs)
        low, high = wilson(count, len(runs))
        arms[spec.name] = {**model, "runs": runs, "polarised_runs": count,
                           "rate": count / len(runs), "rate_ci": [low, high]}
    results = {"threshold": POLARISED, "arms": arms, "test": compare(arms)}
    plots.polarisation(results, setup.out / "polarisation.png")
    plots.expert_heatmaps({f"{name} seed {run['seed']}": run["mean_gate"] for name, arm in arms.items()
                           for run in arm["runs"]}, setup.out / "experts.png",
                          columns=cfg.polarisation.seeds)
    return results, markdown(setup, results)


def train_one_seed(setup: Setup, task: tuple[int, str]) -> dict[str, Any]:
    """Train arm ``name`` with the seed of ``replicate``; its gates' health and true watch time."""
    replicate, name = task
    cfg = setup.experiment.config
    arm = setup.train_arm(name, replicate)
    experts = arm.offline.get("experts") or {}
    mean_gate = experts.get("mean_gate", {})
    served = serve_arm(setup.world, setup.traffic, setup.truth, arm)
    truth = measure.expected(setup.world, setup.traffic, setup.truth, served.outcomes.position)
    return {
        "seed": training_seed(cfg.seed, replicate, cfg.arm(name).seed_offset),
        "mean_gate": mean_gate,
        "polarised_tasks": experts.get("polarised_tasks", []),
        "polarised": bool(experts.get("polarised_tasks")),
        "largest_gate": max((max(row) for row in mean_gate.values()), default=float("nan")),
        "effective_experts": float(np.mean([effective_experts(r) for r in mean_gate.values()]))
        if mean_gate else float("nan"),
        **truth,
        "model": {"gate_dropout": arm.config.model.gate_dropout, "model": arm.config.model.kind,
                  "experts": arm.config.model.num_experts},
    }


def compare(arms: dict[str, Any]) -> dict[str, Any] | None:
    """Fisher's one-sided test that the arm with the least gate dropout polarises more often than
    the other, and its power against 20% vs 0% at the smaller arm's number of runs."""
    if len(arms) != 2:
        return None
    low, high = sorted(arms, key=lambda n: arms[n]["gate_dropout"])
    a, b = arms[low], arms[high]
    n = min(len(a["runs"]), len(b["runs"]))
    return {"more_polarised": low, "than": high,
            "p_value": fisher_exact_greater(a["polarised_runs"], len(a["runs"]),
                                            b["polarised_runs"], len(b["runs"])),
            "power_20_vs_0": fisher_power(0.2, 0.0, n)}


def markdown(setup: Setup, results: dict[str, Any]) -> str:
    header = ["arm", "gate dropout", "runs", "polarised runs", "rate [95% CI]",
              "mean largest gate weight", "mean effective experts", "true watch min/request"]
    rows = []
    for name, arm in results["arms"].items():
        runs = arm["runs"]
        watch = np.array([r["expected_watch_time"] for r in runs])
        rows.append([name, f"{arm['gate_dropout']:g}", str(len(runs)), str(arm["polarised_runs"]),
                     f"{100 * arm['rate']:.0f}% [{100 * arm['rate_ci'][0]:.0f}, "
                     f"{100 * arm['rate_ci'][1]:.0f}]",
                     f"{np.mean([r['largest_gate'] for r in runs]):.3f}",
                     f"{np.mean([r['effective_experts'] for r in runs]):.2f} of {arm['experts']}",
                     f"{watch.mean():.3f} ± {watch.std(ddof=1) if len(watch) > 1 else 0.0:.3f}"])
    per_run = [[name, str(r["seed"]), f"{r['largest_gate']:.3f}", f"{r['effective_experts']:.2f}",
                ", ".join(r["polarised_tasks"]) or "-"]
               for name, arm in results["arms"].items() for r in arm["runs"]]
    lines = report.header(setup.experiment.config)
    lines += ["## Polarisation over seeds", "", markdown_table(header, rows), "",
              f"A run is polarised when a task's mean gate weight on one expert is >= "
              f"{results['threshold']} on the validation day. Effective experts = exp(entropy) of a "
              "task's mean gate, averaged over tasks. True watch: expected minutes per request when "
              "the run serves the evaluation traffic (mean ± sd over seeds).", "",
              "## Every run", "",
              markdown_table(["arm", "seed", "largest gate weight", "effective experts",
                              "polarised tasks"], per_run), ""]
    test = results["test"]
    if test:
        lines[lines.index("## Every run"):lines.index("## Every run")] = [
            f"One-sided Fisher exact test that {test['more_polarised']} polarises more often than "
            f"{test['than']}: p = {test['p_value']:.3f}. Its power to detect 20% of runs polarised "
            f"vs none at this number of seeds (level 0.05): {100 * test['power_20_vs_0']:.0f}%.", ""]
    return "\n".join(lines)

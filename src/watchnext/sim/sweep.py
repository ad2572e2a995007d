"""The combination-weight kind: the engagement / satisfaction trade-off of the final score.

One model is trained; then for every combination of the multipliers in ``sweep.grid`` (per task
or per group) its exponents are rescaled, and the resulting rankings serve the same evaluation
traffic. Each setting is placed by its true engagement (expected watch minutes per request) and
true satisfaction (expected satisfaction per click), both computed from the world's hidden model
without sampling noise; the settings no other setting beats on both axes form the Pareto front.
"""

from __future__ import annotations

import itertools
from typing import Any

from watchnext.config import TaskSpec
from watchnext.evaluate.tables import markdown_table
from watchnext.sim import measure, plots, report
from watchnext.sim.setup import Setup
from watchnext.sim.world import slate_positions


def pareto_flags(points: list[tuple[float, float]]) -> list[bool]:
    """True for points that no other point beats on one coordinate while matching or beating it
    on the other (maximising both); identical points share their flag."""
    return [not any(o[0] >= p[0] and o[1] >= p[1] and o != p for o in points) for p in points]


def exponents_for(tasks: list[TaskSpec], multipliers: dict[str, float]) -> list[float]:
    """Default exponents scaled by each task's multiplier, else its group's, else 1."""
    return [t.exponent * multipliers.get(t.name, multipliers.get(t.group, 1.0)) for t in tasks]


def run_sweep(setup: Setup) -> tuple[dict[str, Any], str]:
    cfg = setup.experiment.config
    name = cfg.sweep.arm or next(a.name for a in cfg.arms if a.policy == "model")
    arm = setup.train_arm(name)
    tasks = list(arm.config.tasks)
    predictions = arm.policy.predictions(setup.world, setup.traffic)
    keys = list(cfg.sweep.grid)
    points = []
    for values in itertools.product(*(cfg.sweep.grid[k] for k in keys)):
        multipliers = dict(zip(keys, values, strict=True))
        exponents = exponents_for(tasks, multipliers)
        position = slate_positions(arm.policy.combine(predictions, exponents), setup.world.config.slots)
        live = measure.summary(measure.per_request(setup.world.respond(setup.traffic, position,
                                                                       setup.truth)))
        points.append({"multipliers": multipliers, "exponents": exponents,
                       "default": all(v == 1 for v in values),
                       **measure.expected(setup.world, setup.traffic, setup.truth, position),
                       "live": live})
    flags = pareto_flags([(p["expected_watch_time"], p["expected_satisfaction"]) for p in points])
    for point, flag in zip(points, flags, strict=True):
        point["pareto"] = flag
    results = {"arm": name, "tasks": [t.name for t in tasks], "groups": [t.group for t in tasks],
               "default_exponents": [t.exponent for t in tasks], "grid": keys, "points": points}
    plots.pareto(points, setup.out / "pareto.png", f"{cfg.name}: combination weights ({name})")
    return results, markdown(setup, results)


def markdown(setup: Setup, results: dict[str, Any]) -> str:
    header = [*[f"{k} x" for k in results["grid"]], "exponents", "true watch min/request",
              "true satisfaction/click", "live mean rating", "live like rate", "Pareto"]
    rows = [[*[f"{p['multipliers'][k]:g}" for k in results["grid"]],
             " ".join(f"{w:g}" for w in p["exponents"]), f"{p['expected_watch_time']:.3f}",
             f"{p['expected_satisfaction']:.4f}", f"{p['live']['mean_rating']:.4f}",
             f"{p['live']['like_rate']:.4f}",
             ("yes" if p["pareto"] else "") + (" (default)" if p["default"] else "")]
            for p in results["points"]]
    tasks = ", ".join(f"{t} ({g})" for t, g in zip(results["tasks"], results["groups"], strict=True))
    lines = report.header(setup.experiment.config)
    lines += [f"Model: arm {results['arm']!r}; tasks: {tasks}; default exponents "
              f"{' '.join(f'{w:g}' for w in results['default_exponents'])}.", "",
              "## Combination-weight sweep", "", markdown_table(header, rows), "",
              "Each row scales the default exponents by the multipliers of its task or group. "
              "True metrics are expected values under the world's hidden model; live ones are "
              "sampled on the same traffic.", ""]
    return "\n".join(lines)

"""The combination-weight kind: the engagement / satisfaction trade-off of the final score.

One model is trained; then for every pair of multipliers (a, b) its exponents become
``w_t = a * w_t`` for engagement tasks and ``w_t = b * w_t`` for satisfaction tasks, and the
resulting rankings serve the same evaluation traffic. Each setting is placed by its true
engagement (expected watch minutes per request) and true satisfaction (expected satisfaction per
click), both computed from the world's hidden model without sampling noise; the settings no other
setting beats on both axes form the Pareto front.
"""

from __future__ import annotations

from typing import Any

from watchnext.evaluate.tables import markdown_table
from watchnext.sim import measure, plots, report
from watchnext.sim.setup import Setup
from watchnext.sim.world import slate_positions


def pareto_flags(points: list[tuple[float, float]]) -> list[bool]:
    """True for points no other point matches or beats on both coordinates (maximising)."""
    return [not any(o[0] >= p[0] and o[1] >= p[1] and o != p for o in points) for p in points]


def run_sweep(setup: Setup) -> tuple[dict[str, Any], str]:
    cfg = setup.experiment.config
    name = cfg.sweep.arm or next(a.name for a in cfg.arms if a.policy == "model")
    arm = setup.train_arm(name)
    tasks = arm.config.tasks
    predictions = arm.policy.predictions(setup.world, setup.traffic)
    points = []
    for a in cfg.sweep.engagement:
        for b in cfg.sweep.satisfaction:
            exponents = [t.exponent * (a if t.group == "engagement" else b) for t in tasks]
            position = slate_positions(arm.policy.combine(predictions, exponents), setup.world.config.slots)
            live = measure.summary(measure.per_request(setup.world.respond(setup.traffic, position,
                                                                           setup.truth)))
            points.append({"engagement": a, "satisfaction": b, "exponents": exponents,
                           "default": a == 1 and b == 1,
                           **measure.expected(setup.world, setup.traffic, setup.truth, position),
                           "live": live})
    flags = pareto_flags([(p["expected_watch_time"], p["expected_satisfaction"]) for p in points])
    for point, flag in zip(points, flags, strict=True):
        point["pareto"] = flag
    results = {"arm": name, "tasks": [t.name for t in tasks], "groups": [t.group for t in tasks],
               "default_exponents": [t.exponent for t in tasks], "points": points}
    plots.pareto(points, setup.out / "pareto.png", f"{cfg.name}: combination weights ({name})")
    return results, markdown(setup, results)


def markdown(setup: Setup, results: dict[str, Any]) -> str:
    header = ["engagement x", "satisfaction x", "exponents", "true watch min/request",
              "true satisfaction/click", "live mean rating", "live like rate", "Pareto"]
    rows = [[f"{p['engagement']:g}", f"{p['satisfaction']:g}",
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
              "Each row scales the default exponents of the engagement tasks by the first factor "
              "and those of the satisfaction tasks by the second. True metrics are expected values "
              "under the world's hidden model; live ones are sampled on the same traffic.", ""]
    return "\n".join(lines)

"""The feedback-loop kind: each arm retrains on the logs of its own traffic, round after round.

Round r: every arm trains on the last ``feedback.window`` days of its own log history (at first
the shared logging days), serves that round's traffic (the same requests for every arm), and its
impressions become the newest day of its history. Tracked per round: the live metrics, their lift
over the control arm with 95% CIs, and bias amplification: how concentrated exposure becomes
(Gini of impressions over videos, share of the top 1% of videos) and how much clickbait is
clicked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from watchnext.data.io import read_tables
from watchnext.evaluate.tables import markdown_table
from watchnext.sim import logs, measure, plots, report
from watchnext.sim.arms import serve_arm, train_arm
from watchnext.sim.setup import Setup
from watchnext.sim.simulate import FEEDBACK_STREAM
from watchnext.sim.stats import gini, top_share


def run_feedback(setup: Setup) -> tuple[dict[str, Any], str]:
    cfg = setup.experiment.config
    fb, world = cfg.feedback, setup.world
    shared = [setup.out / "logs" / f"day={d}" for d in setup.dates]
    history: dict[str, list[Path]] = {arm.name: list(shared) for arm in cfg.arms}
    rounds = []
    for r in range(1, fb.rounds + 1):
        day = cfg.logging.days + r
        traffic = world.traffic(day, fb.requests_per_round, FEEDBACK_STREAM)
        truth = world.truth(traffic)
        row: dict[str, Any] = {"round": r, "date": world.config.date(day), "arms": {}}
        sums = {}
        for spec in cfg.arms:
            recent = history[spec.name][-fb.window:]
            train_days, valid_days = (recent[:-1], recent[-1:]) if len(recent) > 1 else (recent, [])
            train = read_tables([str(p) for p in train_days])
            valid = read_tables([str(p) for p in valid_days]) if valid_days else None
            arm = train_arm(setup.experiment.ranker, spec, train, valid, cfg.seed,
                            setup.cost_reference, setup.log)
            served = serve_arm(world, traffic, truth, arm, fb.epsilon)
            root = setup.out / "logs" / spec.name
            logs.write_day(logs.impressions(world, traffic, served.outcomes, spec.name), root,
                           row["date"])
            history[spec.name].append(logs.day_folder(root, row["date"]))
            sums[spec.name] = served.sums
            row["arms"][spec.name] = {**measure.summary(served.sums),
                                      **measure.expected(world, traffic, truth, served.outcomes.position),
                                      **exposure(world, traffic, served.outcomes)}
        for name in row["arms"]:
            row["arms"][name]["lifts"] = {m: lift.to_dict() for m, lift in
                                          measure.lifts(sums[name], sums[cfg.control]).items()}
        rounds.append(row)
        setup.log(f"round {r}: " + ", ".join(f"{n} {a['watch_time']:.3f} min/request"
                                             for n, a in row["arms"].items()))
    results = {"control": cfg.control, "rounds": rounds}
    plots.rounds(results, setup.out / "rounds.png")
    return results, markdown(setup, results)


def exposure(world: Any, traffic: Any, outcomes: Any) -> dict[str, float]:
    """Concentration of impressions over videos and the clickbait level of what was clicked."""
    shown = traffic.candidates[outcomes.position > 0]
    counts = np.bincount(shown, minlength=world.config.videos.count)
    clicked = traffic.candidates[outcomes.click]
    return {"exposure_gini": gini(counts), "top1_share": top_share(counts, 0.01),
            "distinct_videos": int((counts > 0).sum()),
            "clickbait_of_clicks": float(world.clickbait[clicked].mean()) if len(clicked) else 0.0}


def markdown(setup: Setup, results: dict[str, Any]) -> str:
    header = ["round", "arm", "watch min/request", "watch lift", "click rate lift",
              "mean rating lift", "exposure Gini", "top-1% share", "clickbait of clicks"]
    rows = []
    for row in results["rounds"]:
        for name, arm in row["arms"].items():
            control = name == results["control"]
            rows.append([str(row["round"]), name, f"{arm['watch_time']:.3f}",
                         "control" if control else report.pct(arm["lifts"]["watch_time"]),
                         "control" if control else report.pct(arm["lifts"]["click_rate"]),
                         "control" if control else report.pct(arm["lifts"]["mean_rating"]),
                         f"{arm['exposure_gini']:.3f}", f"{arm['top1_share']:.3f}",
                         f"{arm['clickbait_of_clicks']:.3f}"])
    fb = setup.experiment.config.feedback
    lines = report.header(setup.experiment.config)
    lines += [f"{fb.rounds} rounds of {fb.requests_per_round:,} requests; each arm retrains on the "
              f"last {fb.window} days of its own logs and explores on {100 * fb.epsilon:g}% of "
              "requests.", "", "## Round by round", "", markdown_table(header, rows), "",
              report.LEGEND, ""]
    return "\n".join(lines)

"""Experiment results as Markdown tables (the JSON is the results dict itself).

Tables hold only seeded, computed numbers (no timings), so the same config and seed give the same
table byte for byte.
"""

from __future__ import annotations

import math
from typing import Any

from watchnext.evaluate.tables import markdown_table
from watchnext.sim.measure import METRICS


def pct(lift: dict[str, Any]) -> str:
    """``+1.23% [+0.45, +2.01]``: a lift with its 95% interval, in percent."""
    if lift is None or math.isnan(lift["lift"]):
        return "n/a"
    mark = "*" if lift["significant"] else ""
    return f"{100 * lift['lift']:+.2f}%{mark} [{100 * lift['low']:+.2f}, {100 * lift['high']:+.2f}]"


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def lifts_table(results: dict[str, Any]) -> str:
    """One row per arm: cost, watch minutes per request, and every live metric's lift."""
    control = results["control"]
    header = ["arm", "multiplications", "watch min/request", *[f"{m} lift" for m in METRICS]]
    rows = []
    for name, arm in results["arms"].items():
        cells = ["control" if name == control else pct(arm["lifts"][m]) for m in METRICS]
        rows.append([name, num(arm.get("cost")), num(arm["live"]["watch_time"], 3), *cells])
    return markdown_table(header, rows)


def truth_table(results: dict[str, Any], devices: list[str]) -> str:
    """Expected (true) metrics, NDCG against the truth and the bias-curve check per arm."""
    header = ["arm", "true watch min/request", "true satisfaction/click", "NDCG@k click",
              "NDCG@k value", *[f"bias Spearman {d}" for d in devices], "largest bias error"]
    rows = []
    for name, arm in results["arms"].items():
        gt = arm.get("ground_truth", {})
        bias = gt.get("bias", {})
        ndcg = gt.get("ndcg", {})
        errors = [b["max_abs_error"] for b in bias.values()]
        rows.append([name, num(arm["truth"]["expected_watch_time"], 3),
                     num(arm["truth"]["expected_satisfaction"], 4),
                     num(ndcg.get("click")), num(ndcg.get("value")),
                     *[num(bias[d]["spearman"], 3) if d in bias else "-" for d in devices],
                     num(max(errors), 3) if errors else "-"])
    return markdown_table(header, rows)


def offline_table(results: dict[str, Any]) -> str:
    """Validation-day metrics per arm and task (serving mode: position missing)."""
    arms = {n: a["offline"] for n, a in results["arms"].items() if a.get("offline")}
    if not arms:
        return ""
    tasks = list(next(iter(arms.values()))["tasks"])
    header = ["arm", *[f"{t} {'AUC' if 'auc' in row else 'RMSE'}" for t, row in
                       next(iter(arms.values()))["tasks"].items()]]
    rows = [[name, *[num(off["tasks"][t].get("auc", off["tasks"][t].get("rmse"))) for t in tasks]]
            for name, off in arms.items()]
    return markdown_table(header, rows)


def header(cfg: Any) -> list[str]:
    """Title, description and seed of an experiment config."""
    lines = [f"# {cfg.name}", ""]
    if cfg.description:
        lines += [cfg.description.strip(), ""]
    lines += [f"kind: {cfg.kind}, seed: {cfg.seed}", ""]
    return lines


LEGEND = ("Lifts are relative to the control arm on identical requests (common random numbers), "
          "with 95% delta-method intervals; * marks an interval that excludes zero.")


def interval_name(replicates: int) -> str:
    """What the lifts' 95% intervals cover, as the tables say it."""
    if replicates < 2:
        return "delta method over requests (traffic noise only; one training seed per arm)"
    return (f"two-level t-interval over {replicates} replicates: mean of the paired per-replicate "
            f"lifts +- t sqrt(training var / {replicates} + traffic var), Satterthwaite df "
            f"(>= {replicates - 1})")


def legend(replicates: int) -> str:
    """The sentence under a lifts table."""
    if replicates < 2:
        return LEGEND
    return (f"Each arm trained {replicates} times (training seeds); lifts are the mean of the "
            f"{replicates} paired lifts (replicate r's arm over replicate r's control on identical "
            "requests, common random numbers), with 95% intervals that include training noise: "
            f"{interval_name(replicates)}. * marks an interval that excludes zero; "
            "watch min/request is the mean over replicates.")


def replicates_table(results: dict[str, Any], metric: str = "watch_time") -> str:
    """Each replicate's lift of ``metric`` per arm, with the training and traffic spreads."""
    n = results["replicates"]
    header = ["arm", *[f"replicate {r + 1}" for r in range(n)], "mean", "training sd",
              "traffic sd"]
    rows = []
    for name, arm in results["arms"].items():
        if name == results["control"]:
            continue
        lift = arm["lifts"][metric]
        rows.append([name, *[pct(r["lifts"][metric]) for r in arm["replicates"]],
                     f"{100 * lift['lift']:+.2f}%", f"{100 * lift['training_sd']:.2f}%",
                     f"{100 * lift['traffic_sd']:.2f}%"])
    return markdown_table(header, rows)

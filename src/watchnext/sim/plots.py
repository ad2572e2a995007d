"""PNG plots of experiment results, drawn with matplotlib's object API (no global pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from watchnext.sim.measure import METRICS


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def lifts(results: dict[str, Any], path: Path) -> Path:
    """One panel per live metric: each arm's lift over control with its 95% interval."""
    arms = [n for n in results["arms"] if n != results["control"]]
    fig = Figure(figsize=(3.2 * len(METRICS), 0.5 * len(arms) + 1.8))
    for i, metric in enumerate(METRICS):
        ax = fig.add_subplot(1, len(METRICS), i + 1)
        values = [results["arms"][a]["lifts"][metric] for a in arms]
        centre = np.array([100 * v["lift"] for v in values])
        err = np.array([[100 * (v["lift"] - v["low"]) for v in values],
                        [100 * (v["high"] - v["lift"]) for v in values]])
        ax.errorbar(centre, np.arange(len(arms)), xerr=err, fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(np.arange(len(arms)), arms if i == 0 else [""] * len(arms))
        ax.set_ylim(-0.5, len(arms) - 0.5)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("lift vs control (%)", fontsize=8)
    fig.suptitle(f"{results['experiment']}: lifts over {results['control']} (95% CI)", fontsize=10)
    return _save(fig, path)


def bias_curves(results: dict[str, Any], path: Path) -> Path | None:
    """Learned (relative to slot 1) vs true log examination, one panel per device."""
    arms = {n: a["ground_truth"]["bias"] for n, a in results["arms"].items()
            if a.get("ground_truth", {}).get("bias")}
    if not arms:
        return None
    devices = list(next(iter(arms.values())))
    fig = Figure(figsize=(3.2 * len(devices), 3.2))
    for i, device in enumerate(devices):
        ax = fig.add_subplot(1, len(devices), i + 1)
        first = next(iter(arms.values()))[device]
        slots = np.arange(1, len(first["true_relative"]) + 1)
        ax.plot(slots, first["true_relative"], "k-", lw=2, label="true log exam(p)/exam(1)")
        for name, bias in arms.items():
            check = bias[device]
            ax.plot(slots, check["learned_relative"], "o--",
                    label=f"{name} (rho={check['spearman']:.3f})")
        ax.set_title(device, fontsize=10)
        ax.set_xlabel("position")
        if i == 0:
            ax.set_ylabel("bias relative to position 1")
        ax.legend(fontsize=7)
    return _save(fig, path)


def expert_heatmaps(gates: dict[str, dict[str, list[float]]], path: Path, columns: int = 4
                    ) -> Path | None:
    """Mean gate weight (task x expert) for each labelled model."""
    gates = {k: v for k, v in gates.items() if v}
    if not gates:
        return None
    cols = min(columns, len(gates))
    rows = (len(gates) + cols - 1) // cols
    fig = Figure(figsize=(3.4 * cols, 2.6 * rows))
    for i, (label, mean_gate) in enumerate(gates.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        matrix = np.array(list(mean_gate.values()))
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_yticks(np.arange(len(mean_gate)), list(mean_gate), fontsize=7)
        ax.set_xticks(np.arange(matrix.shape[1]), [f"e{j}" for j in range(matrix.shape[1])], fontsize=7)
        ax.set_title(label, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def pareto(points: list[dict[str, Any]], path: Path, title: str) -> Path:
    """True engagement vs true satisfaction per exponent setting, the front and the default."""
    fig = Figure(figsize=(6.5, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    x = np.array([p["expected_watch_time"] for p in points])
    y = np.array([p["expected_satisfaction"] for p in points])
    ax.scatter(x, y, c="lightgrey", edgecolors="grey", label="exponent settings")
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["expected_watch_time"])
    ax.plot([p["expected_watch_time"] for p in front], [p["expected_satisfaction"] for p in front],
            "o-", color="tab:blue", label="Pareto front")
    for p in front:
        ax.annotate("/".join(f"{v:g}" for v in p["multipliers"].values()),
                    (p["expected_watch_time"], p["expected_satisfaction"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    default = [p for p in points if p["default"]]
    if default:
        ax.scatter([default[0]["expected_watch_time"]], [default[0]["expected_satisfaction"]],
                   marker="*", s=220, color="tab:red", zorder=5, label="default exponents")
    ax.set_xlabel("true engagement: expected watch minutes per request")
    ax.set_ylabel("true satisfaction per click")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def rounds(results: dict[str, Any], path: Path) -> Path:
    """Feedback loop: per round, engagement, satisfaction, exposure concentration and lift."""
    panels = [("watch_time", "watch min/request"), ("mean_rating", "mean rating"),
              ("exposure_gini", "exposure Gini"), ("clickbait_of_clicks", "mean clickbait of clicks")]
    fig = Figure(figsize=(13, 3.4))
    table = results["rounds"]
    arms = list(table[0]["arms"])
    colour = {arm: f"C{i}" for i, arm in enumerate(arms)}
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels) + 1, i + 1)
        for arm in arms:
            ax.plot([r["round"] for r in table], [r["arms"][arm][key] for r in table], "o-",
                    color=colour[arm], label=arm)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("round")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, len(panels) + 1, len(panels) + 1)
    for arm in arms:
        if arm == results["control"]:
            continue
        lifts = [r["arms"][arm]["lifts"]["watch_time"] for r in table]
        x = [r["round"] for r in table]
        ax.errorbar(x, [100 * v["lift"] for v in lifts],
                    yerr=[[100 * (v["lift"] - v["low"]) for v in lifts],
                          [100 * (v["high"] - v["lift"]) for v in lifts]], fmt="o-", capsize=3,
                    color=colour[arm], label=arm)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(f"watch time lift vs {results['control']} (%)", fontsize=9)
    ax.set_xlabel("round")
    ax.legend(fontsize=7)
    return _save(fig, path)


def polarisation(results: dict[str, Any], path: Path) -> Path:
    """Largest mean gate weight per task, every run, per arm: polarised runs sit near 1."""
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, arm) in enumerate(results["arms"].items()):
        values = [max(max(row) for row in run["mean_gate"].values()) for run in arm["runs"]]
        jitter = np.linspace(-0.15, 0.15, len(values))
        ax.scatter(i + jitter, values, label=name)
    ax.axhline(results["threshold"], color="tab:red", lw=0.8, ls="--", label="polarised")
    ax.set_xticks(np.arange(len(results["arms"])), list(results["arms"]))
    ax.set_ylabel("largest mean gate weight of a task")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    return _save(fig, path)

"""The audit as people and programs read it: verdicts, tower warnings, a table, JSON and a plot.

The shallow tower's learned curve (relative to position 1) is checked against the intervals of the
two logit-scale estimators (``randomised``, ``fixed_effects``); ``pbm`` is a log-examination ratio,
a different quantity, so it is shown but never used to flag the tower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from watchnext.artifacts.atomic import atomic_path
from watchnext.data.errors import DataError
from watchnext.evaluate import bias_estimators as estimators
from watchnext.evaluate.bias import LearnedBias
from watchnext.evaluate.bias_audit import AuditLog, Estimate

LOGIT_ESTIMATORS = ("randomised", "fixed_effects")
ESTIMATORS = (*LOGIT_ESTIMATORS, "pbm")
FEW_ROWS_PER_ITEM = 20  # below this, fixed-effects fits are biased (docs/bias-audit.md)
LABELS = {"randomised": "randomised Δlogit", "fixed_effects": "fixed-effects Δlogit",
          "pbm": "PBM log exam ratio"}


@dataclass(frozen=True)
class TowerWarning:
    """The tower's relative bias at one (device, position) lies outside an estimator's interval."""

    estimator: str
    device: str
    position: int
    tower: float
    low: float
    high: float

    @property
    def distance(self) -> float:
        """Logits from the tower's value to the nearest end of the interval."""
        return self.low - self.tower if self.tower < self.low else self.tower - self.high

    def __str__(self) -> str:
        side = "below" if self.tower < self.low else "above"
        return (f"{self.device} position {self.position}: tower {self.tower:+.3f} is "
                f"{self.distance:.3f} logit {side} the {self.estimator} interval "
                f"[{self.low:+.3f}, {self.high:+.3f}]")


@dataclass
class Audit:
    """Everything ``watchnext bias`` reports."""

    summary: dict[str, Any]
    estimates: dict[str, dict[str, Estimate]]
    tower: dict[str, dict[int, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(d for e in self.estimates.values() for d in e))

    @property
    def positions(self) -> list[int]:
        return list(range(1, self.summary["max_position"] + 1))

    @property
    def warnings(self) -> list[TowerWarning]:
        return tower_warnings(self.estimates, self.tower)

    def verdicts(self) -> list[str]:
        """Per estimator and device: is a position effect detectable at all?"""
        lines = []
        for name, per_device in self.estimates.items():
            for device, est in per_device.items():
                lines.append(f"{name}, {device}: {verdict(est, name == 'randomised')}")
        return lines


def run_audit(log: AuditLog, replicates: int = 200, seed: int = 0, pbm: bool = True,
              tower: LearnedBias | None = None) -> Audit:
    """All estimators on ``log``; with ``tower``, its curves relative to position 1."""
    repeated = estimators.repeated_items(log)
    if not log.randomised.any() and not repeated.any():
        raise DataError("no item is shown at more than one position and no row is marked "
                        "randomised: nothing identifies a position effect (see --item, "
                        "--randomised)", file=log.source)
    estimates = {"randomised": estimators.randomised(log) if log.randomised.any() else {},
                 "fixed_effects": estimators.fixed_effects(log, replicates, seed=seed)}
    if pbm:
        estimates["pbm"] = estimators.pbm(log, replicates, seed=seed)
    notes = []
    if not log.randomised.any():
        notes.append("randomised: no randomised traffic marked (--randomised), not estimated")
    if not repeated.any():
        notes.append("fixed_effects, pbm: no item shown at more than one position, not estimated")
    elif (per_item := estimators.rows_per_item(log)) < FEW_ROWS_PER_ITEM:
        notes.append(f"fixed_effects, pbm: a median of {per_item:g} rows per item key; with so "
                     "few, the per-item effects are poorly estimated and the position effects "
                     "come out too large (incidental parameters) - use a coarser item key")
    summary = {"source": log.source, "rows": len(log.click), "clicks": float(log.click.sum()),
               "randomised_rows": int(log.randomised.sum()),
               "repeated_item_rows": int(repeated.sum()), "max_position": log.max_position,
               "devices": log.device_names, "bootstrap_replicates": replicates}
    audit = Audit(summary, {k: v for k, v in estimates.items() if v}, notes=notes)
    if tower is not None:
        audit.tower, missing = relative_tower(tower, log.device_names, log.max_position)
        if missing:
            notes.append(f"tower: no learned curve for device(s) {', '.join(missing)} "
                         f"(the model knows {', '.join(tower.curves)})")
    return audit


def relative_tower(tower: LearnedBias, devices: list[str], max_position: int
                   ) -> tuple[dict[str, dict[int, float]], list[str]]:
    """The tower's curves minus their position-1 value, for the log's devices it knows."""
    out = {}
    for device in devices:
        curve = tower.curves.get(device)
        if curve is not None:
            out[device] = {p: curve[p] - curve[1] for p in range(1, max_position + 1) if p in curve}
    return out, [d for d in devices if d not in out]


def tower_warnings(estimates: dict[str, dict[str, Estimate]], tower: dict[str, dict[int, float]]
                   ) -> list[TowerWarning]:
    """Every (estimator, device, position) where the tower lies outside the 95% interval."""
    out = []
    for name in LOGIT_ESTIMATORS:
        for device, est in estimates.get(name, {}).items():
            for p, value in tower.get(device, {}).items():
                low, high = est.low.get(p, math.nan), est.high.get(p, math.nan)
                if p > 1 and math.isfinite(low) and not low <= value <= high:
                    out.append(TowerWarning(name, device, p, value, low, high))
    return out


def verdict(est: Estimate, omnibus: bool) -> str:
    """Which positions differ from position 1, or that none detectably does."""
    differ = [p for p in est.value if p > 1 and math.isfinite(est.low[p])
              and not est.low[p] <= 0 <= est.high[p]]
    known = [p for p in est.value if math.isfinite(est.low[p])]
    span = f"positions {min(known)}-{max(known)}" if known else "no position"
    test = ""
    if omnibus:
        p_value = est.extra["p_value"][0]
        test = f"; chi-square test of equal click rates p = {p_value:.3g}"
    if not differ:
        return f"no detectable position effect among {span} (every 95% interval covers 0{test})"
    return f"position effect detected: positions {', '.join(map(str, differ))} differ from " \
           f"position 1 (95% intervals exclude 0{test})"


# ---- JSON ------------------------------------------------------------------------------------

def to_json(audit: Audit) -> dict[str, Any]:
    """Plain data; positions as string keys, NaN as null."""
    def num(x: float) -> float | None:
        return round(float(x), 5) if math.isfinite(x) else None

    def estimate(est: Estimate) -> dict[str, Any]:
        out = {str(p): {"value": num(est.value[p]), "low": num(est.low[p]),
                        "high": num(est.high[p])} for p in est.value}
        for key, values in est.extra.items():
            if key == "p_value":
                continue
            for p, v in values.items():
                out[str(p)][key] = num(v)
        return out

    return {
        "summary": audit.summary,
        "estimators": {name: {d: {"positions": estimate(e),
                                  **({"p_value": num(e.extra["p_value"][0])}
                                     if "p_value" in e.extra else {}),
                                  "verdict": verdict(e, name == "randomised")}
                              for d, e in per_device.items()}
                       for name, per_device in audit.estimates.items()},
        "tower": {d: {str(p): num(v) for p, v in c.items()} for d, c in audit.tower.items()},
        "warnings": [{"estimator": w.estimator, "device": w.device, "position": w.position,
                      "tower": num(w.tower), "low": num(w.low), "high": num(w.high),
                      "distance": num(w.distance)} for w in audit.warnings],
        "notes": audit.notes,
    }


# ---- table -----------------------------------------------------------------------------------

def table_rows(audit: Audit) -> tuple[list[str], list[list[str]]]:
    """One row per (device, position): counts, click rate and every estimator with its interval."""
    names = [n for n in ESTIMATORS if n in audit.estimates]
    header = ["device", "position", "rows", "clicks", "CTR [95%]",
              *[f"{LABELS[n]} [95%]" for n in names]]
    if audit.tower:
        header.append("tower Δlogit")
    flagged = {(w.device, w.position) for w in audit.warnings}
    rows = []
    for device in audit.devices:
        rnd = audit.estimates.get("randomised", {}).get(device)
        for p in audit.positions:
            row = [device, str(p)]
            if rnd is not None:
                x = rnd.extra
                row += [f"{x['rows'][p]:.0f}", f"{x['clicks'][p]:.0f}",
                        _interval(x["click_rate"][p], x["click_rate_low"][p],
                                  x["click_rate_high"][p], "{:.4f}")]
            else:
                row += ["-", "-", "-"]
            for name in names:
                est = audit.estimates[name].get(device)
                row.append(_interval(est.value[p], est.low[p], est.high[p]) if est else "-")
            if audit.tower:
                value = audit.tower.get(device, {}).get(p)
                mark = " (!)" if (device, p) in flagged else ""
                row.append("-" if value is None else f"{value:+.3f}{mark}")
            rows.append(row)
    return header, rows


def _interval(value: float, low: float, high: float, fmt: str = "{:+.3f}") -> str:
    if not math.isfinite(value):
        return "not identified"
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


# ---- plot ------------------------------------------------------------------------------------

def plot(audit: Audit, path: str | Path) -> Path:
    """One panel per device: each estimator's curve with its 95% band, and the tower's curve."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    devices = audit.devices
    fig = Figure(figsize=(4.2 * len(devices), 3.6))
    FigureCanvasAgg(fig)  # draw with Agg here, whatever backend the process has chosen
    for i, device in enumerate(devices):
        ax = fig.add_subplot(1, len(devices), i + 1)
        for j, name in enumerate(n for n in ESTIMATORS if n in audit.estimates):
            est = audit.estimates[name].get(device)
            if est is None:
                continue
            x = np.array(list(est.value))
            value, low, high = (np.array([d[p] for p in x]) for d in (est.value, est.low, est.high))
            ax.plot(x, value, "o-", color=f"C{j}", label=LABELS[name])
            ax.fill_between(x, low, high, color=f"C{j}", alpha=0.2)
        if device in audit.tower:
            curve = audit.tower[device]
            ax.plot(list(curve), list(curve.values()), "k--", lw=2, label="shallow tower")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(audit.positions)
        ax.set_title(device, fontsize=10)
        ax.set_xlabel("position")
        if i == 0:
            ax.set_ylabel("effect relative to position 1")
        ax.legend(fontsize=7)
    fig.suptitle("position-bias audit (95% intervals)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return Path(path)

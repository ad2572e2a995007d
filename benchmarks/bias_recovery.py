"""Does the shallow tower learn the right SIZE of the position bias? Measured in the simulator.

    python benchmarks/bias_recovery.py                    # 3 world seeds x 2 training seeds
    python benchmarks/bias_recovery.py --quick            # 2 x 1, smaller logs (a smoke run)
    python benchmarks/bias_recovery.py --out runs/bias_recovery.json
    python benchmarks/bias_recovery.py --compare runs/before.json runs/bias_recovery.json

Scenarios (each world seed gets its own world and logs; every arm trains on the same logs):

    default      the default world, logged by popularity with 20% random slates (exploration)
    no_effect    the same world with no position effect (every device examines every slot alike)
    confounded   the default world logged by popularity with no exploration: the slot and the
                 relevance the logging policy sorted on go together

Arms: ``tower`` is ``sim_ranker.toml`` as shipped (the default config); ``paper`` is the paper's
mechanism (10% plain position dropout, ``bias.missing = "dropout"``), all else default;
``no_tower`` has no bias features (default scenario only, for the NDCG comparison). ``ABLATIONS``
change one setting of the default each (``--arms``, default scenario only).

The truth a tower is compared with is the *additive-logit* curve: the best
``c[device][position] + h(appeal)`` description of the world's multiplicative click model
``P(click) = exam[device][position] * appeal``, fitted to the exact click probabilities of the
logged impressions (``h`` a free function of the appeal, on fine quantile bins). Curves are
compared relative to position 1: per device, the largest |learned - true| over positions 1..10
(logit) and the Spearman correlation. In the no-effect world the truth is flat. NDCG@10 is of the
serving-mode click prediction against the true click appeal (``sim.measure.truth_ndcg``) on fresh
traffic, paired tower - no_tower over (world seed, training seed) with a t interval.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from watchnext.api import Ranker
from watchnext.config import RunConfig
from watchnext.sim import logs, measure
from watchnext.sim.policies import EpsilonMix, ModelPolicy, make_policy
from watchnext.sim.simulate import EVAL_STREAM, LOG_STREAM
from watchnext.sim.world import World, slate_positions
from watchnext.sim.world_config import DeviceSpec, load_world
from watchnext.workflows import bundled_config

SCENARIOS = {  # name: (logging policy, exploration share, position effect)
    "default": ("popularity", 0.2, True),
    "no_effect": ("popularity", 0.2, False),
    "confounded": ("popularity", 0.0, True),
}
ARMS: dict[str, dict[str, Any]] = {  # name: overrides of sim_ranker.toml
    "tower": {},
    "paper": {"bias": {"missing": "dropout", "position_dropout": 0.1}},
    "no_tower": {"bias": {"position": "", "device": ""}},
}
USER_ID = {"name": "user_id", "kind": "categorical", "embedding_dim": 8}
USER_TOPIC = {"name": "user_topic", "kind": "categorical", "embedding_dim": 8,  # user x topic
              "cross": ["user_id", "video_topic"]}  # interest: the reference model's table
ABLATIONS: dict[str, dict[str, Any]] = {  # one setting of the default changed (--arms; default world)
    "dropout_0.3": {"bias": {"missing": "dropout", "position_dropout": 0.3}},
    "no_smoothness": {"bias": {"smoothness": 0.0}},
    "smooth_from_1": {"bias": {"smooth_from": 1}},
    "mlp_tower": {"bias": {"hidden_units": [16]}},
    "mlp_tower_rate_30": {"bias": {"hidden_units": [16], "learning_rate_scale": 30.0}},
    "tower_rate_1x": {"bias": {"learning_rate_scale": 1.0}},
    "stop_on_total": {"train": {"early_stopping": "total"}},
    "epochs_8": {"train": {"max_epochs": 8}},
    "user_id": {"features": [USER_ID], "train": {"table_weight_decay": 1e-4}},
    "user_topic": {"features": [USER_TOPIC], "train": {"table_weight_decay": 1e-4}},
}
ARMS |= ABLATIONS
SCENARIO_ARMS = {"default": ("tower", "paper", "no_tower"), "no_effect": ("tower", "paper"),
                 "confounded": ("tower", "paper")}
ALLOWED_ARMS = {"default": (*SCENARIO_ARMS["default"], *ABLATIONS),
                "no_effect": SCENARIO_ARMS["no_effect"], "confounded": SCENARIO_ARMS["confounded"]}
TRUTH_BINS = 200


@dataclass
class Logs:
    train: pa.Table
    valid: pa.Table
    device: np.ndarray  # [N] world device index of each training row
    position: np.ndarray  # [N] 1..slots
    p_click: np.ndarray  # [N] true click appeal of each training row


def make_world(seed: int, position_effect: bool) -> World:
    cfg = load_world(bundled_config("sim_world"))
    devices = cfg.devices if position_effect else tuple(
        DeviceSpec(d.name, d.share, d.exam_top, 0.0) for d in cfg.devices)
    return World(replace(cfg, seed=seed, devices=devices))


def simulate(world: World, policy: str, epsilon: float, days: int, requests: int) -> Logs:
    """``days`` training days and one validation day, with the truth of every training row."""
    mix = EpsilonMix(make_policy(policy), epsilon)
    tables, device, position, p_click = [], [], [], []
    for day in range(days + 1):
        traffic = world.traffic(day, requests, LOG_STREAM)
        truth = world.truth(traffic)
        outcomes = world.respond(traffic, slate_positions(mix.scores(world, traffic),
                                                          world.config.slots), truth)
        tables.append(logs.impressions(world, traffic, outcomes, mix.name))
        if day < days:  # the same row order as logs.impressions
            rows, cols = np.nonzero(outcomes.position)
            order = np.lexsort((outcomes.position[rows, cols], rows))
            rows, cols = rows[order], cols[order]
            device.append(traffic.device[rows])
            position.append(outcomes.position[rows, cols])
            p_click.append(truth.p_click[rows, cols])
    return Logs(pa.concat_tables(tables[:-1]), tables[-1], np.concatenate(device),
                np.concatenate(position), np.concatenate(p_click))


def additive_truth(world: World, data: Logs, appeal: np.ndarray | None = None) -> np.ndarray:
    """``c[device][position]`` ``[D, slots]``, relative to position 1, of the best additive fit.

    Minimises the expected log loss of ``sigmoid(c[d][p] + h[bin(appeal)])`` against the exact
    click probability ``exam[d][p] * appeal`` over the logged rows. The loss is linear in the
    target, so rows are summed per (device, position, appeal bin) cell first. ``appeal`` replaces
    the true appeal as what ``h`` may depend on (e.g. a model's own click estimate: the best
    additive curve for a relevance model that knows only that).
    """
    slots, n_dev = world.config.slots, len(world.config.devices)
    p = data.p_click if appeal is None else appeal
    logit = np.log(p) - np.log1p(-p)
    edges = np.quantile(logit, np.linspace(0, 1, TRUTH_BINS + 1)[1:-1])
    cell = (data.device * slots + data.position - 1) * TRUTH_BINS + np.digitize(logit, edges)
    size = n_dev * slots * TRUTH_BINS
    target = world.exam[data.device, data.position] * data.p_click
    count = torch.from_numpy(np.bincount(cell, minlength=size).reshape(n_dev, slots, TRUTH_BINS))
    clicks = torch.from_numpy(np.bincount(cell, weights=target, minlength=size)
                              .reshape(n_dev, slots, TRUTH_BINS))
    c = torch.zeros(n_dev, slots, 1, dtype=torch.float64, requires_grad=True)
    h = torch.zeros(1, 1, TRUTH_BINS, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([c, h], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        z = c + h
        value = (count * torch.nn.functional.softplus(z) - clicks * z).sum() / count.sum()
        value.backward()
        return value

    opt.step(loss)
    curve = c.detach().squeeze(-1).numpy()
    return curve - curve[:, :1]


def learned_curves(ranker: Ranker, world: World) -> np.ndarray | None:
    """The click task's learned bias ``[D, slots]`` per world device, relative to position 1,
    from the one export of the learned bias (``Ranker.learned_bias``)."""
    bias = ranker.learned_bias().get("click")
    if bias is None:
        return None
    curve = np.array([[bias.curves[device][p] for p in range(1, world.config.slots + 1)]
                      for device in world.config.device_names])
    return curve - curve[:, :1]


def achievable(ranker: Ranker, world: World, data: Logs, curve: np.ndarray) -> dict[str, Any]:
    """The learned curve against the best additive curve for this model's relevance estimate:
    the truth with ``h`` a function of the main model's serving click prediction, not of the
    true appeal. What is left between the two truths is relevance the model cannot see."""
    click = ranker.config.task_names.index("click")
    estimate = np.clip(ranker.predict(data.train)[:, click], 1e-6, 1 - 1e-6)
    target = additive_truth(world, data, estimate)
    return compare(curve, target) | {"truth": [[round(float(v), 3) for v in t] for t in target]}


def compare(learned: np.ndarray, truth: np.ndarray) -> dict[str, list[float]]:
    return {"max_abs_error": [float(np.abs(a - b).max()) for a, b in zip(learned, truth, strict=True)],
            "spearman": [measure.spearman(a, b) if np.ptp(b) > 0 else float("nan")
                         for a, b in zip(learned, truth, strict=True)],
            "learned": [[round(float(v), 3) for v in a] for a in learned]}


def train(base: RunConfig, arm: str, data: Logs, seed: int, max_epochs: int | None) -> Ranker:
    overrides = {k: dict(v) for k, v in ARMS[arm].items() if k != "features"}
    if "features" in ARMS[arm]:  # extra features beside the shipped ones
        overrides["features"] = [*base.to_dict()["features"], *ARMS[arm]["features"]]
    overrides["train"] = {**overrides.get("train", {}), "seed": seed, "progress": False,
                          "threads": 1}
    if max_epochs:
        overrides["train"]["max_epochs"] = max_epochs
    return Ranker(base.replace(**overrides)).fit(data.train, data.valid)


def ndcg(ranker: Ranker, world: World, requests: int, day: int) -> float:
    traffic = world.traffic(day, requests, EVAL_STREAM)
    policy = ModelPolicy(ranker)
    predictions = policy.predictions(world, traffic)
    click = ranker.config.task_names.index("click")
    return measure.truth_ndcg(world.truth(traffic), predictions[..., click],
                              policy.combine(predictions), 10)["click"]


def run_cell(scenario: str, world_seed: int, train_seeds: list[int], args: argparse.Namespace,
             base: RunConfig) -> list[dict[str, Any]]:
    policy, epsilon, effect = SCENARIOS[scenario]
    world = make_world(world_seed, effect)
    data = simulate(world, policy, epsilon, args.days, args.requests)
    truth = additive_truth(world, data) if effect else np.zeros((len(world.exam), world.config.slots))
    out = []
    for seed in train_seeds:
        for arm in args.arms or SCENARIO_ARMS[scenario]:
            if arm not in ALLOWED_ARMS[scenario]:
                continue
            started = time.perf_counter()
            ranker = train(base, arm, data, seed, args.max_epochs)
            row = {"scenario": scenario, "world_seed": world_seed, "train_seed": seed, "arm": arm,
                   "epochs": len(ranker.history[0].train),
                   "best_epoch": ranker.history[0].best_epoch + 1}
            curve = learned_curves(ranker, world)
            if curve is not None:
                row |= compare(curve, truth)
                row["truth"] = [[round(float(v), 3) for v in t] for t in truth]
                if effect and args.achievable:
                    row["achievable"] = achievable(ranker, world, data, curve)
            if scenario == "default":
                row["ndcg"] = ndcg(ranker, world, args.eval_requests, args.days + 1)
            row["seconds"] = round(time.perf_counter() - started, 1)
            print(json.dumps({k: v for k, v in row.items() if k not in ("learned", "truth")}),
                  flush=True)
            out.append(row)
    return out


def t_quantile(q: float, df: int) -> float:
    """Student t quantile for ``q`` > 0.5, by integrating the density (no scipy needed)."""
    x = np.linspace(0.0, 60.0, 600_001)
    pdf = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2)) \
        * (1 + x * x / df) ** (-(df + 1) / 2)
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    return float(np.interp(q, cdf, x))


def interval(diffs: list[float]) -> dict[str, float]:
    """Mean and 95% t interval of paired differences."""
    d = np.asarray(diffs)
    half = t_quantile(0.975, len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d)) \
        if len(d) > 1 else float("nan")
    return {"mean": float(d.mean()), "low": float(d.mean() - half), "high": float(d.mean() + half),
            "n": len(d)}


def summarise(rows: list[dict[str, Any]], devices: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for scenario in SCENARIOS:
        for arm in [a for a in ARMS if a != "no_tower"]:
            cell = [r for r in rows if r["scenario"] == scenario and r["arm"] == arm]
            if not cell:
                continue
            err = np.array([r["max_abs_error"] for r in cell])  # [runs, D]
            rho = np.array([r["spearman"] for r in cell])
            summary[f"{scenario}/{arm}"] = {
                "runs": len(cell),
                "max_abs_error": dict(zip(devices, err.max(0).round(3).tolist(), strict=True)),
                "spearman_min": dict(zip(devices, rho.min(0).round(3).tolist(), strict=True))
                if scenario != "no_effect" else None,
                "best_epoch": [r["best_epoch"] for r in cell],
            }
    base = {(r["world_seed"], r["train_seed"]): r["ndcg"] for r in rows
            if r["scenario"] == "default" and r["arm"] == "no_tower"}
    for arm in [a for a in ARMS if a != "no_tower"]:
        diffs = [r["ndcg"] - base[(r["world_seed"], r["train_seed"])] for r in rows
                 if r["scenario"] == "default" and r["arm"] == arm
                 and (r["world_seed"], r["train_seed"]) in base]
        if diffs:
            summary[f"ndcg_gain/{arm}"] = interval(diffs)
    if "ndcg_gain/tower" in summary and "ndcg_gain/paper" in summary:
        paper = {(r["world_seed"], r["train_seed"]): r["ndcg"] for r in rows
                 if r["scenario"] == "default" and r["arm"] == "paper"}
        summary["ndcg_tower_minus_paper"] = interval(
            [r["ndcg"] - paper[(r["world_seed"], r["train_seed"])] for r in rows
             if r["scenario"] == "default" and r["arm"] == "tower"])
    return summary


def print_table(summary: dict[str, Any], devices: list[str]) -> None:
    print(f"\n{'scenario/arm':<22} {'runs':>4}  " + "  ".join(f"{d:>14}" for d in devices)
          + "  best epochs")
    print(f"{'':<22} {'':>4}  " + "  ".join(f"{'max|err| rho':>14}" for _ in devices))
    for key, s in summary.items():
        if "max_abs_error" not in s:
            continue
        cells = []
        for d in devices:
            rho = s["spearman_min"][d] if s["spearman_min"] else None
            cells.append(f"{s['max_abs_error'][d]:>7.3f} " + (f"{rho:>6.3f}" if rho is not None
                                                              else f"{'flat':>6}"))
        print(f"{key:<22} {s['runs']:>4}  " + "  ".join(cells) + f"  {s['best_epoch']}")
    for key, s in summary.items():
        if key.startswith("ndcg"):
            print(f"{key:<24} {s['mean']:+.4f}  95% [{s['low']:+.4f}, {s['high']:+.4f}]  "
                  f"(n={s['n']} paired)")


def compare_runs(before: Path, after: Path) -> None:
    """Paired NDCG@10 of the same arm in two ``--out`` files (e.g. main's code against this one)."""
    runs = [{(r["scenario"], r["world_seed"], r["train_seed"], r["arm"]): r.get("ndcg")
             for r in json.loads(path.read_text())["runs"]} for path in (before, after)]
    for arm in sorted({key[3] for key in runs[0]} & {key[3] for key in runs[1]}):
        diffs = [runs[1][k] - v for k, v in runs[0].items()
                 if k[3] == arm and v is not None and runs[1].get(k) is not None]
        if diffs:
            s = interval(diffs)
            print(f"ndcg {arm}: after - before {s['mean']:+.4f}  95% [{s['low']:+.4f}, "
                  f"{s['high']:+.4f}]  (n={s['n']} paired)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 worlds x 1 seed, smaller logs")
    parser.add_argument("--world-seeds", type=int, nargs="+")
    parser.add_argument("--train-seeds", type=int, nargs="+")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS))
    parser.add_argument("--arms", nargs="+", choices=list(ARMS))
    parser.add_argument("--days", type=int, help="training days (one more is the validation day)")
    parser.add_argument("--requests", type=int, help="requests per logged day")
    parser.add_argument("--eval-requests", type=int, default=5000)
    parser.add_argument("--max-epochs", type=int, help="override train.max_epochs")
    parser.add_argument("--achievable", action="store_true",
                        help="also compare with the best additive curve given the model's own "
                             "relevance estimate (a diagnostic)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"),
                        help="only compare the NDCG of two --out files, paired by run")
    parser.add_argument("--out", type=Path, help="write every run and the summary as JSON")
    args = parser.parse_args()
    if args.compare:
        compare_runs(*args.compare)
        return
    torch.set_num_threads(1)
    quick = args.quick
    args.world_seeds = args.world_seeds or ([0, 1] if quick else [0, 1, 2])
    args.train_seeds = args.train_seeds or ([0] if quick else [0, 1])
    args.days = args.days or (2 if quick else 3)
    args.requests = args.requests or (5000 if quick else 10000)
    base = bundled_config_run()
    started, rows = time.perf_counter(), []
    for scenario in args.scenarios or list(SCENARIOS):
        for world_seed in args.world_seeds:
            rows += run_cell(scenario, world_seed, args.train_seeds, args, base)
    devices = make_world(0, True).config.device_names
    summary = summarise(rows, devices)
    print_table(summary, devices)
    wall = time.perf_counter() - started
    print(f"\nwall time {wall / 60:.1f} min")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                        "summary": summary, "runs": rows,
                                        "wall_seconds": round(wall)}, indent=2))


def bundled_config_run() -> RunConfig:
    from watchnext.config import load_config

    return load_config(bundled_config("sim_ranker"))


if __name__ == "__main__":
    main()

"""The A/B kind: every arm, trained R times, serves the same evaluation traffic; lifts vs control.

``run_arms(setup)`` is the replicated arms runner (Tables 1 and 2; any list of ``[[arms]]``):

    for replicate r in 0..R-1 (R = experiment ``replicates``, CLI ``--replicates``;
                               ``jobs`` trainings at once, ``watchnext.sim.parallel``):
        every arm trains on the shared logs with seed training_seed(seed, r, arm.seed_offset)
        and serves the shared evaluation requests (common random numbers); arms that differ
        only by their candidates (``[retrieval]``, ``watchnext.sim.sources``) share that
        training: same config and seed, the same ranker, trained once
        lift_r = arm_r over control_r, per live metric, on those requests
    lift = mean_r lift_r with the two-level interval of ``stats.replicated_lift``
           (training spread over replicates + traffic noise of the pooled arms)

Results, per arm: ``lifts[metric]`` (the replicated lift: lift, low, high, significant,
training_sd, traffic_sd, per_replicate), ``live`` / ``truth`` / ``ground_truth`` / ``offline``
(means over replicates) and ``replicates`` (each replicate's seed, live metrics, truth, NDCG and
traffic-only lifts). Fixed policies (``policy = "popularity"``) are served once per replicate too,
so every lift has R paired values. With ``[retrieval]`` every arm is also judged against the
catalogue's true utility (``catalogue``, and ``catalogue_ndcg_lift`` over control).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import numpy as np

from watchnext.sim import measure, plots, report, sources
from watchnext.sim.arms import ground_truth, serve_arm
from watchnext.sim.experiment_config import ArmSpec, training_seed
from watchnext.sim.parallel import run_tasks
from watchnext.sim.setup import Setup
from watchnext.sim.stats import paired_ratio_lift, replicated_lift


def run_arms(setup: Setup) -> tuple[dict[str, Any], str]:
    """Train every arm ``replicates`` times, serve the evaluation traffic, compare with control."""
    cfg = setup.experiment.config
    groups = training_groups(cfg.arms)
    tasks = [(r, names) for r in range(cfg.replicates) for names in groups]
    done: dict[tuple[int, str], dict[str, Any]] = {}
    started = time.perf_counter()
    for (r, names), results in run_tasks(setup, train_and_serve, tasks):
        done.update({(r, name): result for name, result in results.items()})
        elapsed = time.perf_counter() - started
        left = len(cfg.arms) * cfg.replicates - len(done)
        setup.log(f"replicate {r + 1}/{cfg.replicates}, {', '.join(names)}: trained in "
                  f"{results[names[0]]['run']['train_seconds']:.0f}s; done "
                  f"{len(done)}/{len(cfg.arms) * cfg.replicates}, {elapsed:.0f}s elapsed, "
                  f"about {elapsed / len(done) * left:.0f}s left")
    arms = {}
    for spec in cfg.arms:
        mine = [done[(r, spec.name)] for r in range(cfg.replicates)]
        control = [done[(r, cfg.control)] for r in range(cfg.replicates)]
        for result, ctl in zip(mine, control, strict=True):
            result["run"]["lifts"] = {m: lift.to_dict() for m, lift in
                                      measure.lifts(result["sums"], ctl["sums"]).items()}
        arms[spec.name] = _summarise(mine, control)
    results = {"experiment": cfg.name, "control": cfg.control, "replicates": cfg.replicates,
               "interval": report.interval_name(cfg.replicates), "arms": arms}
    if setup.pools:
        results["retrieval"] = json.loads((setup.out / sources.FOLDER / sources.MANIFEST
                                           ).read_text())
    plots.lifts(results, setup.out / "lifts.png")
    plots.bias_curves(results, setup.out / "bias.png")
    plots.expert_heatmaps({n: (a["offline"].get("experts") or {}).get("mean_gate", {})
                           for n, a in arms.items() if a["offline"]}, setup.out / "experts.png")
    return results, markdown(setup, results)


def training_groups(arms: tuple[ArmSpec, ...]) -> list[tuple[str, ...]]:
    """Arms that differ only by their name and candidates (``sources``, ``drop_source``,
    ``world_candidates``) train the same ranker with the same seed: one training serves them
    all. Groups keep the arms' order."""
    groups: dict[str, list[str]] = {}
    for arm in arms:
        key = repr(dataclasses.replace(arm, name="", sources=(), drop_source="",
                                       world_candidates=False))
        groups.setdefault(key, []).append(arm.name)
    return [tuple(names) for names in groups.values()]


def train_and_serve(setup: Setup, task: tuple[int, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    """Replicate ``r`` of a training group: train its ranker once, then let every arm of the
    group serve its evaluation traffic and check the truth. Returns per arm the replicate's
    record (``run``), its per-request sums and the arm's description."""
    r, names = task
    cfg = setup.experiment.config
    trained = setup.train_arm(names[0], r)
    out = {}
    for name in names:
        spec = cfg.arm(name)
        arm = dataclasses.replace(trained, spec=spec)
        if cfg.save_models and arm.ranker is not None and name != names[0]:
            arm.ranker.save(setup.out / "models" / (name + (f"-replicate{r}" if r else "")))
        traffic, truth = setup.arm_traffic(name)
        served = serve_arm(setup.world, traffic, truth, arm, cfg.evaluation.epsilon)
        run = {
            "replicate": r, "seed": training_seed(cfg.seed, r, spec.seed_offset)
            if spec.policy == "model" else None,
            "train_seconds": round(arm.train_seconds, 1),
            "live": measure.summary(served.sums),
            "truth": measure.expected(setup.world, traffic, truth, served.outcomes.position),
            "ground_truth": ground_truth(setup.world, truth, arm, served, cfg.evaluation.ndcg_k),
            "offline": {k: arm.offline.get(k) for k in ("tasks", "experts")} if arm.offline
            else {},
        }
        result = {"run": run, "sums": served.sums}
        if cfg.retrieval.pool_size:
            judged = sources.judge(setup.catalogue_best(), traffic, truth, served.outcomes)
            run["catalogue"] = {m: float(v.mean()) for m, v in judged.items()}
            result["catalogue_ndcg"] = judged["ndcg"]
        result["about"] = {"policy": spec.policy,
                           "model": arm.config.model.kind if arm.config else None,
                           "cost": arm.cost, "seed_offset": spec.seed_offset,
                           "run_config": arm.config.to_dict() if arm.config else None}
        out[name] = result
    return out


def _summarise(replicates: list[dict[str, Any]], control: list[dict[str, Any]]
               ) -> dict[str, Any]:
    """One arm over its replicates: replicated lifts, and every other figure as a mean."""
    runs = [r["run"] for r in replicates]
    sums = [r["sums"] for r in replicates]
    control_sums = [c["sums"] for c in control]
    lifts = {metric: _replicated_ratio_lift(sums, control_sums, num, den)
             for metric, (num, den) in measure.METRICS.items()}
    about = replicates[0]["about"]
    extra = {}
    if "catalogue_ndcg" in replicates[0]:
        extra["catalogue"] = mean_of([r["catalogue"] for r in runs])
        extra["catalogue_ndcg_lift"] = _ndcg_lift([r["catalogue_ndcg"] for r in replicates],
                                                  [c["catalogue_ndcg"] for c in control])
    return {
        **{k: about[k] for k in ("policy", "model", "cost", "seed_offset")},
        "train_seconds": round(sum(r["train_seconds"] for r in runs), 1),
        "lifts": lifts,
        **{key: mean_of([r[key] for r in runs]) for key in ("live", "truth", "ground_truth",
                                                             "offline")},
        "replicates": runs,
        "run_config": about["run_config"],
        **extra,
    }


def _ndcg_lift(arm: list[np.ndarray], control: list[np.ndarray]) -> dict[str, Any]:
    """The replicated lift of mean NDCG@k against the catalogue's truth over control (a ratio
    of per-request sums over requests, as the live metrics)."""
    ones = np.ones(len(arm[0]))
    return _replicated_ratio_lift([{"ndcg": a, "requests": ones} for a in arm],
                                  [{"ndcg": c, "requests": ones} for c in control],
                                  "ndcg", "requests")


def _replicated_ratio_lift(arm: list[dict[str, np.ndarray]], control: list[dict[str, np.ndarray]],
                           num: str, den: str) -> dict[str, Any]:
    """The lift of the ratio sum(num) / sum(den) over control: each replicate paired with its
    control on the same requests, and the replicate-pooled arms for the traffic noise."""
    per = [paired_ratio_lift(a[num], a[den], c[num], c[den])
           for a, c in zip(arm, control, strict=True)]
    pa, pc = _pooled(arm, (num, den)), _pooled(control, (num, den))
    return replicated_lift(per, paired_ratio_lift(pa[num], pa[den], pc[num], pc[den])).to_dict()


def _pooled(sums: list[dict[str, np.ndarray]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-request sums averaged over replicates: the R models of an arm served as one."""
    return {key: np.mean([s[key] for s in sums], axis=0) for key in keys}


def mean_of(values: list[Any]) -> Any:
    """The element-wise mean of equally shaped results (dicts, lists, numbers); anything else
    (names, flags) is taken from the first replicate."""
    head = values[0]
    if isinstance(head, dict):
        return {k: mean_of([v[k] for v in values]) for k in head}
    if isinstance(head, list) and head and all(isinstance(x, int | float | list) for x in head):
        return [mean_of([v[i] for v in values]) for i in range(len(head))]
    if isinstance(head, int | float) and not isinstance(head, bool):
        return float(np.mean(values))
    return head


def markdown(setup: Setup, results: dict[str, Any]) -> str:
    cfg = setup.experiment.config
    k = cfg.evaluation.ndcg_k
    lines = report.header(cfg)
    lines += ["## Live metrics", "", report.lifts_table(results), "",
              report.legend(results["replicates"]), ""]
    if results["replicates"] > 1:
        lines += ["## Watch-time lift per replicate", "", report.replicates_table(results), "",
                  "Each replicate's arms are trained with their own seeds and compared on the same "
                  "requests (traffic-only delta-method interval). training sd: the spread of these "
                  "paired lifts; traffic sd: the delta-method standard error of the pooled lift.",
                  ""]
    lines += ["## Against the truth", "",
              report.truth_table(results, setup.world.config.device_names), "",
              f"Means over {results['replicates']} replicate(s). "
              f"NDCG@{k} click: the serving click prediction against the true click appeal; "
              f"NDCG@{k} value: the combined score against the true expected watch minutes of an "
              "examined candidate. Bias: the shallow tower's learned click bias per device against "
              "the true examination curve (Spearman over positions 1..slots; largest error of the "
              "bias relative to position 1 against log exam(p)/exam(1)).", ""]
    if "retrieval" in results:
        lines += [sources.markdown(results, k), ""]
    offline = report.offline_table(results)
    if offline:
        lines += ["## Offline, validation day (serving mode)", "", offline, ""]
    return "\n".join(lines)

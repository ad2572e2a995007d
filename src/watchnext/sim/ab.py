"""The A/B kind: every arm serves the same evaluation traffic; lifts vs control with 95% CIs."""

from __future__ import annotations

from typing import Any

from watchnext.sim import measure, plots, report
from watchnext.sim.arms import ground_truth, serve_arm
from watchnext.sim.setup import Setup


def run_arms(setup: Setup) -> tuple[dict[str, Any], str]:
    """Train every arm, serve the evaluation traffic, and compare with the control arm."""
    cfg = setup.experiment.config
    arms: dict[str, Any] = {}
    sums: dict[str, dict[str, Any]] = {}
    for spec in cfg.arms:
        arm = setup.train_arm(spec.name)
        served = serve_arm(setup.world, setup.traffic, setup.truth, arm, cfg.evaluation.epsilon)
        sums[spec.name] = served.sums
        arms[spec.name] = {
            "policy": spec.policy, "model": arm.config.model.kind if arm.config else None,
            "cost": arm.cost, "train_seconds": round(arm.train_seconds, 1),
            "live": measure.summary(served.sums),
            "truth": measure.expected(setup.world, setup.traffic, setup.truth,
                                      served.outcomes.position),
            "ground_truth": ground_truth(setup.world, setup.truth, arm, served,
                                         cfg.evaluation.ndcg_k),
            "offline": {k: arm.offline.get(k) for k in ("tasks", "experts")} if arm.offline else {},
            "run_config": arm.config.to_dict() if arm.config else None,
        }
    for name, arm in arms.items():
        arm["lifts"] = {m: lift.to_dict() for m, lift in
                        measure.lifts(sums[name], sums[cfg.control]).items()}
    results = {"experiment": cfg.name, "control": cfg.control, "arms": arms}
    plots.lifts(results, setup.out / "lifts.png")
    plots.bias_curves(results, setup.out / "bias.png")
    plots.expert_heatmaps({n: (a["offline"].get("experts") or {}).get("mean_gate", {})
                           for n, a in arms.items() if a["offline"]}, setup.out / "experts.png")
    return results, markdown(setup, results)


def markdown(setup: Setup, results: dict[str, Any]) -> str:
    cfg = setup.experiment.config
    k = cfg.evaluation.ndcg_k
    lines = report.header(cfg)
    lines += ["## Live metrics", "", report.lifts_table(results), "", report.LEGEND, "",
              "## Against the truth", "",
              report.truth_table(results, setup.world.config.device_names), "",
              f"NDCG@{k} click: the serving click prediction against the true click appeal; "
              f"NDCG@{k} value: the combined score against the true expected watch minutes of an "
              "examined candidate. Bias: the shallow tower's learned click bias per device against "
              "the true examination curve (Spearman over positions 1..slots; largest error of the "
              "bias relative to position 1 against log exam(p)/exam(1)).", ""]
    offline = report.offline_table(results)
    if offline:
        lines += ["## Offline, validation day (serving mode)", "", offline, ""]
    return "\n".join(lines)

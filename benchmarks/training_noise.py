"""Where does the A/A arm's spread come from? One arm retrained over seeds, per training variant.

    python benchmarks/training_noise.py --variants base,ema --seeds 4 --out runs/training_noise.json
    python benchmarks/training_noise.py --variants base --requests-per-day 40000

Every variant trains Table 2's control arm (no debiasing) with ``--seeds`` training seeds on the
same logs (``experiment_table2.toml``'s world, logging policy and evaluation traffic) and serves
the same evaluation requests. Per variant: the spread over seeds of the *true* expected watch
minutes per request (no response sampling: pure training noise), of the live watch minutes, and
of the early-stopping epoch. The sd of the true watch time, in percent of its mean, times
sqrt(2) is the sd of one replicate's A/A lift.

Variants (``VARIANTS``) change the arm's ``[train]`` section; ``--requests-per-day`` changes the
amount of logged data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from watchnext.sim import measure
from watchnext.sim.arms import serve_arm, train_arm
from watchnext.sim.experiment_config import load_experiment
from watchnext.sim.setup import prepare

CONFIG = Path(__file__).resolve().parents[1] / "src" / "watchnext" / "configs" / "experiment_table2.toml"
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {"weight_averaging": 0.0},  # the last iterate (sim_ranker.toml before averaging)
    "ema": {"weight_averaging": 0.998},  # sim_ranker.toml's weight average
    "lr_1e-3": {"weight_averaging": 0.0, "learning_rate": 0.001},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="base,ema")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--requests-per-day", type=int, default=0, help="0: the config's")
    parser.add_argument("--out", type=Path, default=Path("runs/training_noise.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    experiment = load_experiment(CONFIG)
    cfg = experiment.config
    if args.requests_per_day:
        cfg = dataclasses.replace(cfg, logging=dataclasses.replace(
            cfg.logging, requests_per_day=args.requests_per_day))
        experiment = dataclasses.replace(experiment, config=cfg)
    control = cfg.arm(cfg.control)
    results: dict[str, Any] = {"config": str(CONFIG), "requests_per_day": cfg.logging.requests_per_day,
                               "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        setup = prepare(experiment, Path(tmp), print)
        for name in args.variants.split(","):
            arm_spec = dataclasses.replace(control, train={**control.train, **VARIANTS[name]})
            runs = []
            for seed in range(args.seeds):
                started, cpu = time.perf_counter(), time.process_time()
                arm = train_arm(experiment.ranker, arm_spec, setup.train, setup.valid, seed,
                                setup.cost_reference, print)
                served = serve_arm(setup.world, setup.traffic, setup.truth, arm)
                truth = measure.expected(setup.world, setup.traffic, setup.truth,
                                         served.outcomes.position)
                history = arm.ranker.history[-1]
                runs.append({"seed": seed, "true_watch": truth["expected_watch_time"],
                             "live_watch": measure.summary(served.sums)["watch_time"],
                             "best_epoch": history.best_epoch + 1, "epochs": len(history.train),
                             "seconds": round(time.perf_counter() - started, 1),
                             "cpu_seconds": round(time.process_time() - cpu, 1)})
                print(name, runs[-1], flush=True)
            true = np.array([r["true_watch"] for r in runs])
            live = np.array([r["live_watch"] for r in runs])
            results["variants"][name] = {
                "train": VARIANTS[name], "runs": runs,
                "true_watch_mean": float(true.mean()),
                "true_watch_sd_pct": float(100 * true.std(ddof=1) / true.mean()),
                "live_watch_sd_pct": float(100 * live.std(ddof=1) / live.mean()),
                "aa_lift_sd_pct": float(100 * np.sqrt(2) * true.std(ddof=1) / true.mean()),
                "best_epochs": [r["best_epoch"] for r in runs],
            }
            print(name, {k: v for k, v in results["variants"][name].items() if k != "runs"}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

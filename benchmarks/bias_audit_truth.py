"""Does ``watchnext bias`` recover the simulator's truth within its 95% intervals?

Per world seed, logs are made as ``watchnext simulate`` makes them (popularity policy, 20% of
requests shown a random slate and logged ``policy = random``), the audit runs on them, and every
estimator is compared with its *estimand*: the same estimator fitted to the exact click
probabilities exam(device, position) x appeal of the same logged rows, i.e. what it would report
without sampling noise. The position-based model is also compared with the world's examination
curve log exam(p) / exam(1), which it equals when its assumptions hold.

    python benchmarks/bias_audit_truth.py --seeds 0 1 2 --days 2 --requests 10000
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pyarrow as pa
import torch

from watchnext.evaluate import bias_estimators as est
from watchnext.evaluate.bias_audit import AuditColumns, AuditLog, read_log
from watchnext.evaluate.bias_audit_report import run_audit
from watchnext.sim import logs
from watchnext.sim.commands import bundled
from watchnext.sim.policies import EpsilonMix, PopularityPolicy, serve, served_by
from watchnext.sim.simulate import LOG_STREAM
from watchnext.sim.world import World
from watchnext.sim.world_config import load_world

COLUMNS = AuditColumns(device="device", item="video_id", request="request_id")


def simulated_log(seed: int, days: int, requests: int, epsilon: float, query: str = ""
                  ) -> tuple[AuditLog, np.ndarray, World]:
    """The logged rows and each row's exact click probability."""
    world = World(dataclasses.replace(load_world(bundled("sim_world", "")), seed=seed))
    policy = EpsilonMix(PopularityPolicy(), epsilon)
    tables, probabilities = [], []
    for day in range(days):
        traffic = world.traffic(day, requests, LOG_STREAM)
        outcomes = serve(world, traffic, policy)
        tables.append(logs.impressions(world, traffic, outcomes, served_by(policy, world, traffic)))
        rows, cols = np.nonzero(outcomes.position)  # the order logs.impressions writes
        order = np.lexsort((outcomes.position[rows, cols], rows))
        rows, cols = rows[order], cols[order]
        exam = world.exam[traffic.device[rows], outcomes.position[rows, cols]]
        probabilities.append(exam * world.truth(traffic).p_click[rows, cols])
    columns = dataclasses.replace(COLUMNS, query=query)
    return read_log(pa.concat_tables(tables), columns), np.concatenate(probabilities), world


def compare(seed: int, days: int, requests: int, epsilon: float, replicates: int, query: str
            ) -> list[list[str]]:
    log, probability, world = simulated_log(seed, days, requests, epsilon, query)
    audit = run_audit(log, replicates, seed=seed)
    print(f"world seed {seed}: {len(log.click):,} rows, median {est.rows_per_item(log):g} rows "
          "per item key")
    exact = log.with_clicks(probability)
    estimands = {"randomised": est.randomised(exact),
                 "fixed_effects": est.fixed_effects(exact, replicates=1),
                 "pbm": est.pbm(exact, replicates=1)}
    rows = []
    for name, per_device in audit.estimates.items():
        for device, estimate in per_device.items():
            target = estimands[name][device].value
            positions = [p for p in estimate.value if p > 1 and np.isfinite(estimate.low[p])]
            covered = sum(estimate.low[p] <= target[p] <= estimate.high[p] for p in positions)
            error = max(abs(estimate.value[p] - target[p]) for p in positions)
            width = np.mean([estimate.high[p] - estimate.low[p] for p in positions])
            d = world.config.device_names.index(device)
            exam = np.log(world.exam[d, 1:] / world.exam[d, 1])
            vs_exam = max(abs(target[p] - exam[p - 1]) for p in positions)
            rows.append([str(seed), name, device, f"{covered}/{len(positions)}", f"{error:.3f}",
                         f"{width:.3f}", f"{vs_exam:.3f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--epsilon", type=float, default=0.2)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--query", default="", help="item key per (QUERY, video_id)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    header = ["world seed", "estimator", "device", "estimand inside 95% interval",
              "max |estimate - estimand|", "mean interval width",
              "max |estimand - log exam(p)/exam(1)|"]
    rows = [r for seed in args.seeds for r in compare(seed, args.days, args.requests,
                                                      args.epsilon, args.bootstrap, args.query)]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    hits = [tuple(map(int, r[3].split("/"))) for r in rows]
    for name in ("randomised", "fixed_effects", "pbm"):
        mine = [h for h, r in zip(hits, rows, strict=True) if r[1] == name]
        print(f"\n{name}: estimand inside the interval at {sum(h[0] for h in mine)} of "
              f"{sum(h[1] for h in mine)} (device, position) cells", end="")
    print(f"\n\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""The served two-stage system in the simulator against the true utility (issue 15).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_two_stage.py [--seeds 0 1] [--requests 2000]
        [--pool-size 100] [--out runs/sim_two_stage]

Per world seed: the default world (``configs/sim_world.toml``) logs 3 days with the default
logging policy (popularity, 20% random slates); the ranker (``configs/sim_ranker.toml``) trains
on days 1-2 and validates on day 3; watchnext's default pool is fitted on the 3 logged days;
``--requests`` evaluation requests of day 4 are served by each system and judged against the
true utility (``watchnext.sim.twostage``). The logging policy is judged without its random
share (popularity order on the world's candidates). The popular source's freshness and whether
a user's pools leave out the videos the user clicked are chosen per seed as on KuaiRand, by the
pool's recall of day 3's logged clicks (sources fitted on days 1-2): KuaiRand's settings (the
day's new videos first; watched videos out) against the others. The popular-only baseline
follows the pool's exclusion rule. The exclusion table then serves the pool and popular-only
under both rules (what the rule alone does to NDCG, and the share of the served top 10 the user
had clicked in the logs). Then the sources judged live: pools without one source, or popular
plus one, served to the same requests (lifts of the live metrics over the full pool; the
replicated version is ``watchnext experiment sources``); and the held-out recall table of
``evaluate_retrieval`` on the logged clicks of day 3 (sources fitted on days 1-2), as on
KuaiRand. Results go to stdout and ``two_stage.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from watchnext.api import Ranker
from watchnext.config import load_config
from watchnext.retrieve.evaluate import evaluate_retrieval, report_rows
from watchnext.sim import logs
from watchnext.sim.experiment_config import LoggingSpec
from watchnext.sim.policies import ModelPolicy, PopularityPolicy
from watchnext.sim.simulate import EVAL_STREAM, simulate_logs
from watchnext.sim.twostage import (
    COLUMNS,
    Scores,
    catalogue_utility,
    clustered,
    fit_pool,
    judge,
    pool_candidates,
    pooled_traffic,
    popular_candidates,
    source_ablation,
    two_stage_report,
    with_request_time,
)
from watchnext.sim.world import Traffic, World
from watchnext.sim.world_config import load_world

CONFIGS = Path(__file__).resolve().parents[1] / "src/watchnext/configs"


def pct(v: dict) -> str:
    return f"{100 * v['value']:.2f} [{100 * v['low']:.2f}, {100 * v['high']:.2f}]"


def run_seed(seed: int, requests: int, pool_size: int, out: Path) -> dict:
    world = World(dataclasses.replace(load_world(CONFIGS / "sim_world.toml"), seed=seed))
    spec = LoggingSpec()
    started = time.perf_counter()
    dates = simulate_logs(world, spec, out / f"seed{seed}" / "logs", log=lambda m: None)
    every = logs.read_days(out / f"seed{seed}" / "logs", dates)
    train, valid = (logs.read_days(out / f"seed{seed}" / "logs", d) for d in (dates[:-1],
                                                                             dates[-1:]))
    ranker = Ranker(load_config(CONFIGS / "sim_ranker.toml")).fit(train, valid)
    ranker_seconds = time.perf_counter() - started
    settings = choose_settings(world, train, valid, pool_size, requests)
    chosen = settings["chosen"]
    started = time.perf_counter()
    pool = fit_pool(every, world, pool_size, popular=chosen["popular"],
                    exclude_watched=chosen["exclude_watched"])
    pool_seconds = time.perf_counter() - started
    traffic = world.traffic(spec.days, requests, EVAL_STREAM)
    model = ModelPolicy(ranker)
    rank = lambda t: model.scores(world, t)  # noqa: E731
    report = two_stage_report(world, every, pool, traffic, rank=rank,
                              logging=lambda t: PopularityPolicy().scores(world, t))
    report["exclusion"] = exclusion_check(world, every, traffic, pool_size, chosen["popular"],
                                          rank)
    started = time.perf_counter()
    report["ablation"] = source_ablation(world, pool, traffic, rank,
                                         popular_candidates(every, traffic, pool_size)[0])
    report["ablation_seconds"] = time.perf_counter() - started
    report["held_out"] = held_out_recall(world, train, valid, model, pool_size, requests, chosen)
    report["settings"] = settings
    report.update({"seed": seed, "ranker_seconds": ranker_seconds, "pool_seconds": pool_seconds,
                   "fit_seconds": pool.fit_seconds, "logged_impressions": every.num_rows})
    return report


FRESHNESS = [{"fresh_share": 1.0, "fresh_days": 1.0},  # the default, chosen on KuaiRand
             {"fresh_share": 0.25, "fresh_days": 2.0}, {"fresh_share": 0.0, "fresh_days": 2.0}]
SETTINGS = [{"popular": fresh, "exclude_watched": exclude}
            for exclude in (True, False) for fresh in FRESHNESS]  # KuaiRand's first


def first_requests(world: World, table: pa.Table, requests: int) -> pa.Table:
    first = np.unique(table["request_id"].to_numpy())[:requests]
    return with_request_time(table.filter(pc.is_in(table["request_id"], pa.array(first))), world)


def choose_settings(world: World, train: pa.Table, valid: pa.Table, pool_size: int,
                    requests: int) -> dict:
    """The popular source's freshness and the exclusion of watched videos chosen as on
    KuaiRand: pools fitted on days 1-2, recall of the logged clicks of day 3 (no ranker, no
    truth); the first of the tied best is taken."""
    evaluation = first_requests(world, valid, requests)
    recall = {}
    for settings in SETTINGS:
        pool = fit_pool(train, world, pool_size, popular=settings["popular"],
                        exclude_watched=settings["exclude_watched"])
        report = evaluate_retrieval(pool, with_request_time(train, world), evaluation, ["click"],
                                    COLUMNS)
        recall[str(settings)] = report["labels"]["click"]["rows"]["pool"]["recall"]["value"]
    best = max(SETTINGS, key=lambda f: recall[str(f)])
    return {"validation_recall": recall, "chosen": best}


def exclusion_check(world: World, every: pa.Table, traffic: Traffic, pool_size: int,
                    popular: dict, rank: Scores) -> dict:
    """The pool and popular-only, each with the user's clicked videos left out and kept, ranked
    by the ranker and judged against the truth; and the share of the served top 10 that the user
    had clicked in the logs."""
    utility = catalogue_utility(world, traffic)
    clicked = every.filter(pc.equal(every["click"], 1))
    seen: dict[int, set[int]] = {}
    for u, v in zip(clicked["user_id"].to_numpy().tolist(),
                    clicked["video_id"].to_numpy().tolist(), strict=True):
        seen.setdefault(u, set()).add(v)
    fallback = popular_candidates(every, traffic, pool_size)[0]
    out, per = {}, {}
    for exclude in (True, False):
        pool = fit_pool(every, world, pool_size, popular=popular, exclude_watched=exclude)
        rule = "watched out" if exclude else "watched kept"
        lists = {"two-stage": pool_candidates(pool, traffic, fallback)[0],
                 "popular-only": popular_candidates(every, traffic, pool_size, pool.watched)}
        for name, candidates in lists.items():
            scores = rank(pooled_traffic(traffic, candidates))
            per[(name, rule)] = judge(utility, candidates, scores, 10)
            top = np.take_along_axis(candidates, np.argsort(-scores, axis=1, kind="stable")[:, :10],
                                     axis=1)
            watched = np.array([[v in seen.get(u, ()) for v in row] for u, row in
                                zip(traffic.user.tolist(), top.tolist(), strict=True)])
            out[f"{name}, {rule}"] = {
                **{m: clustered(v, traffic.user) for m, v in per[(name, rule)].items()},
                "served_watched": float(watched.mean())}
        out[f"two-stage minus popular-only, {rule}"] = {
            m: clustered(per[("two-stage", rule)][m] - per[("popular-only", rule)][m],
                         traffic.user) for m in per[("two-stage", rule)]}
    return out


def held_out_recall(world: World, train: pa.Table, valid: pa.Table, model: ModelPolicy,
                    pool_size: int, requests: int, chosen: dict) -> dict:
    """``evaluate_retrieval`` on the simulated logs, as on KuaiRand: sources fitted on days 1-2,
    judged on the logged clicks of the first ``requests`` requests of day 3, ranked by the
    ranker. Against the truth above, this shows what the logged clicks' exposure does to it."""
    pool = fit_pool(train, world, pool_size, popular=chosen["popular"],
                    exclude_watched=chosen["exclude_watched"])
    evaluation = first_requests(world, valid, requests)

    def scorer(user: str, query: str | None, ids: list[str], when: float) -> np.ndarray:
        u = int(user)
        one = Traffic(0, 0, np.zeros(1, np.int64), np.array([u]), world.user_device[[u]],
                      np.array([int(query) if query is not None else 0]),
                      np.array([[int(v) for v in ids]], np.int64), {})
        return model.scores(world, pooled_traffic(one, one.candidates))[0]

    return evaluate_retrieval(pool, with_request_time(train, world), evaluation, ["click"],
                              COLUMNS, scorer=scorer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--pool-size", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/sim_two_stage"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for seed in args.seeds:
        started = time.perf_counter()
        report = run_seed(seed, args.requests, args.pool_size, args.out)
        report["wall_seconds"] = time.perf_counter() - started
        results.append(report)
        print(f"pool settings on the validation day: {report['settings']}")
        print(f"world seed {seed}: {report['requests']} requests, {report['users']} users, "
              f"pool {report['pool_size']} (quotas {report['quotas']}), fit "
              f"{report['fit_seconds']}, {report['wall_seconds']:.0f} s", flush=True)
        print("| system | candidates | recall of true top 10 in list | true top 10 in served "
              "top 10 | NDCG@10 (true utility) |")
        for name, row in report["systems"].items():
            print(f"| {name} | {row['candidates']} | {pct(row['pool_recall'])} | "
                  f"{pct(row['top_recall'])} | {pct(row['ndcg'])} |")
        for name, row in report["sources"].items():
            print(f"| source:{name} | {row['mean_size']:.1f} | {pct(row['pool_recall'])} | - | - |")
        for name, diff in report["two_stage_minus"].items():
            print(f"| two-stage minus {name} | - | {pct(diff['pool_recall'])} | "
                  f"{pct(diff['top_recall'])} | {pct(diff['ndcg'])} |")
        print("| exclusion rule | served top 10 clicked before | recall of true top 10 in list"
              " | true top 10 in served top 10 | NDCG@10 (true utility) |")
        for name, row in report["exclusion"].items():
            seen = f"{100 * row['served_watched']:.1f}%" if "served_watched" in row else "-"
            print(f"| {name} | {seen} | {pct(row['pool_recall'])} | {pct(row['top_recall'])} | "
                  f"{pct(row['ndcg'])} |")
        metrics = ("watch_time", "click_rate", "mean_rating", "like_rate", "dismiss_rate")
        print("| arm vs all sources | " + " | ".join(metrics) + " |")
        for arm, lifts in report["ablation"]["lifts"].items():
            print(f"| {arm} | " + " | ".join(
                f"{100 * lifts[m]['lift']:+.2f}% [{100 * lifts[m]['low']:+.2f}, "
                f"{100 * lifts[m]['high']:+.2f}]" for m in metrics) + " |")
        header, rows = report_rows(report["held_out"])
        print("| " + " | ".join(header) + " |")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "two_stage.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Pool quotas, cap, exclusion of watched videos and freshness, chosen on the validation day.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/retrieval_choices.py [--out runs/retrieval_choices]

kuairand-sample v1: every source is fitted once on the training days (2022-04-08..17) and the
pools are judged on the validation day (2022-04-18) by ``evaluate_retrieval`` without the ranker
(recall of the pool and of each source); the test days are not read. Variants:

  * fresh (first, with quotas cowatch .1, embedding .45, two-tower .25, popular .2): the popular
    source's share of newly arrived videos (0 to 1) and how new "new" is (first watched in the
    last 1, 2 or 4 days);
  * shares (with the chosen freshness): the quota of each source as a share of the pool;
  * exclude: each query excludes the videos the user clicked in the fitting days;
  * cap: recall of the first N of the chosen pool (watched videos excluded), N = 100 to 500;
  * twotower: the two-tower source alone under a few settings (temperature, epochs, the log-Q
    correction on or off); the source's defaults are the best of these.

The two-tower source's fit time is printed; results go to stdout and ``choices.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from watchnext.config import load_config
from watchnext.data import sources
from watchnext.retrieve import CandidatePool, CoWatch, EmbeddingRetrieval, PopularFresh, TwoTower
from watchnext.retrieve.evaluate import evaluate_retrieval
from watchnext.retrieve.log import WatchLog
from watchnext.serve.model_dir import default_columns

CONFIG = Path(__file__).resolve().parents[1] / "src/watchnext/configs/kuairand_v1.toml"
LABELS = ["is_click", "long_view", "label"]
SHARES = {
    "old default (cowatch .4, embedding .45, popular .15)":
        {"cowatch": 0.4, "embedding": 0.45, "popular": 0.15},
    "cowatch .15, embedding .35, twotower .3, popular .2":
        {"cowatch": 0.15, "embedding": 0.35, "twotower": 0.3, "popular": 0.2},
    "cowatch .1, embedding .25, twotower .45, popular .2":
        {"cowatch": 0.1, "embedding": 0.25, "twotower": 0.45, "popular": 0.2},
    "cowatch .1, embedding .45, twotower .25, popular .2":
        {"cowatch": 0.1, "embedding": 0.45, "twotower": 0.25, "popular": 0.2},
    "cowatch .1, embedding .3, twotower .3, popular .3":
        {"cowatch": 0.1, "embedding": 0.3, "twotower": 0.3, "popular": 0.3},
    "cowatch .1, embedding .35, twotower .2, popular .35":
        {"cowatch": 0.1, "embedding": 0.35, "twotower": 0.2, "popular": 0.35},
    "cowatch .1, embedding .25, twotower .15, popular .5":
        {"cowatch": 0.1, "embedding": 0.25, "twotower": 0.15, "popular": 0.5},
    "twotower 1.0": {"twotower": 1.0},
}
FRESH = [(0.0, 2.0), (0.25, 2.0), (0.5, 2.0), (0.75, 2.0), (0.5, 1.0), (0.75, 1.0), (1.0, 1.0),
         (0.5, 4.0)]  # (share of the popular list for new videos, days a video counts as new)
TWO_TOWER = {
    "temperature 0.1, 8 epochs": {"temperature": 0.1, "epochs": 8},
    "temperature 0.2, 8 epochs": {"temperature": 0.2, "epochs": 8},
    "temperature 0.2, 16 epochs": {"temperature": 0.2, "epochs": 16},
    "temperature 0.4, 16 epochs, no log-Q correction": {"log_q": 0.0},
}


def recall(report: dict, row: str = "pool") -> dict[str, float]:
    return {label: round(100 * r["rows"][row]["recall"]["value"], 2)
            for label, r in report["labels"].items() if row in r["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/retrieval_choices"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(CONFIG)
    splits = sources.load_splits(config)
    train, valid = splits["train"], splits["valid"]
    columns = default_columns(config, train)
    log = WatchLog.from_table(train, columns)
    fitted, seconds = {}, {}
    for name, source in {"cowatch": CoWatch(columns), "embedding": EmbeddingRetrieval(columns),
                         "twotower": TwoTower(columns), "popular": PopularFresh(columns)}.items():
        start = time.perf_counter()
        fitted[name] = source.fit(train, log)
        seconds[name] = round(time.perf_counter() - start, 2)
    print("fit seconds:", seconds, flush=True)
    results: dict = {"fit_seconds": seconds, "train_loss": fitted["twotower"].train_loss.tolist(),
                     "shares": {}, "fresh": {}, "exclude": {}, "cap": {}}

    def judge(shares: dict[str, float], size: int = 300, exclude: bool = False,
              popular: PopularFresh | None = None) -> dict:
        chosen = {n: (popular if n == "popular" and popular else fitted[n]) for n in shares}
        pool = CandidatePool(chosen, size, {n: max(1, round(s * size))
                                            for n, s in shares.items()},
                             fitted_until=log.now)
        return evaluate_retrieval(pool, train, valid, LABELS, columns, exclude_history=exclude)

    start_shares = {"cowatch": 0.1, "embedding": 0.45, "twotower": 0.25, "popular": 0.2}
    for share, days in FRESH:
        popular = PopularFresh(columns, fresh_share=share, fresh_days=days).fit(train, log)
        report = judge(start_shares, popular=popular)
        key = f"fresh share {share}, fresh days {days:g}"
        results["fresh"][key] = {"pool": recall(report),
                                 "source:popular": recall(report, "source:popular")}
        print(f"{key}: {results['fresh'][key]}", flush=True)
    share, days = max(FRESH, key=lambda f: sum(
        results["fresh"][f"fresh share {f[0]}, fresh days {f[1]:g}"]["pool"].values()))
    results["chosen_fresh"] = {"fresh_share": share, "fresh_days": days}
    fresh = PopularFresh(columns, fresh_share=share, fresh_days=days).fit(train, log)
    print("chosen:", results["chosen_fresh"], flush=True)
    for label, shares in SHARES.items():
        start = time.perf_counter()
        report = judge(shares, popular=fresh)
        results["shares"][label] = {"pool": recall(report), **{
            f"source:{n}": recall(report, f"source:{n}") for n in shares}}
        print(f"{label}: {results['shares'][label]} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    best_label = max(results["shares"], key=lambda k: sum(results["shares"][k]["pool"].values()))
    best = SHARES[best_label]
    results["chosen_shares"] = best_label
    print("chosen:", best_label, flush=True)
    report = judge(best, exclude=True, popular=fresh)
    results["exclude"] = {"pool": recall(report), "repeat_items": {
        label: r["repeat_items"] for label, r in report["labels"].items()}}
    print("exclude watched:", results["exclude"], flush=True)
    for size in (100, 200, 300, 500):
        results["cap"][str(size)] = recall(judge(best, size, exclude=True, popular=fresh))
        print(f"cap {size}: {results['cap'][str(size)]}", flush=True)
    results["twotower"] = {"defaults": {"pool": results["shares"]["twotower 1.0"]["pool"],
                                        "fit_seconds": seconds["twotower"]}}
    for label, params in TWO_TOWER.items():
        start = time.perf_counter()
        source = TwoTower(columns, **params).fit(train, log)
        fit = round(time.perf_counter() - start, 2)
        pool = CandidatePool({"twotower": source}, 300, fitted_until=log.now)
        results["twotower"][label] = {"pool": recall(evaluate_retrieval(pool, train, valid,
                                                                        LABELS, columns)),
                                      "fit_seconds": fit}
        print(f"two-tower {label}: {results['twotower'][label]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choices.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

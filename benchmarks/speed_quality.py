"""Quality before and after the training-speed work: kuairand-sample v1 per-task test AUCs.

    .venv/bin/python benchmarks/speed_quality.py                 # before = commit c04f6a3
    .venv/bin/python benchmarks/speed_quality.py --seeds 0 1 2   # and the seed-to-seed spread
    .venv/bin/python benchmarks/speed_quality.py --before-tree /tmp/before --seeds 0 1 2 3 4
        # "before" = another checkout's code as it is (git worktree add /tmp/before REF)

"Before" trains with the grouped-MLP layer code of ``--before`` (default c04f6a3, the last commit
before the speed work: experts as ``baddbmm`` with out-of-place ReLU) patched into today's model,
and glibc's default allocator (``train.retain_freed_memory = false``); "after" is the code as it
is. Both read the same data through today's pipeline with the shipped ``kuairand_v1.toml``, so the
difference isolates what the speed work changed. Every run is a fresh process (the allocator
setting is process-wide). The speed work must leave every task's AUC within 0.002.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.002


def patch_layers_from(ref: str) -> None:
    """Replace GroupedMLP.forward by the one in ``src/watchnext/model/layers.py`` at ``ref``."""
    from watchnext.model import layers

    source = subprocess.run(["git", "show", f"{ref}:src/watchnext/model/layers.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    old = types.ModuleType("layers_before")
    exec(compile(source, f"{ref}:layers.py", "exec"), old.__dict__)  # noqa: S102 - our own history
    layers.GroupedMLP.forward = old.GroupedMLP.forward


def run(spec: dict[str, Any]) -> dict[str, float]:
    from watchnext.api import Ranker
    from watchnext.config import load_config
    from watchnext.data.sources import load_splits
    from watchnext.workflows import bundled_config

    config = load_config(bundled_config("kuairand_v1"))
    train = {"progress": False, "seed": spec["seed"]}
    if spec["before"]:
        patch_layers_from(spec["before"])
        train["retain_freed_memory"] = False
    config = config.replace(train=train)
    splits = load_splits(config)
    ranker = Ranker(config).fit(splits["train"], splits.get("valid"))
    report = ranker.evaluate(splits["test"])["tasks"]
    return {task: row["auc"] for task, row in report.items() if "auc" in row}


def in_subprocess(spec: dict[str, Any], tree: str | None = None) -> dict[str, float]:
    """One training run in a fresh process; with ``tree``, importing that checkout's watchnext."""
    env = {**os.environ, "PYTHONPATH": str(Path(tree) / "src")} if tree else None
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict[tuple[str, int], dict[str, float]], seeds: list[int]) -> str:
    tasks = list(next(iter(results.values())))
    header = ["seed", "task", "AUC before", "AUC after", "after - before", f"within {TOLERANCE}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for seed in seeds:
        before, after = results[("before", seed)], results[("after", seed)]
        for task in tasks:
            diff = after[task] - before[task]
            lines.append(f"| {seed} | {task} | {before[task]:.4f} | {after[task]:.4f} | "
                         f"{diff:+.4f} | {'yes' if abs(diff) <= TOLERANCE else 'NO'} |")
    return "\n".join(lines)


def spread(results: dict[tuple[str, int], dict[str, float]], seeds: list[int]) -> str:
    """Per task: mean and standard deviation over the seeds of each arm, and the difference."""
    tasks = list(next(iter(results.values())))
    lines = [f"| task | before mean ± sd ({len(seeds)} seeds) | after mean ± sd | after - before |",
             "|---|---|---|---|"]
    for task in tasks:
        arms = {arm: [results[(arm, s)][task] for s in seeds] for arm in ("before", "after")}
        sd = {a: statistics.stdev(v) if len(v) > 1 else 0.0 for a, v in arms.items()}
        mean = {a: statistics.mean(v) for a, v in arms.items()}
        lines.append(f"| {task} | {mean['before']:.4f} ± {sd['before']:.4f} | "
                     f"{mean['after']:.4f} ± {sd['after']:.4f} | "
                     f"{mean['after'] - mean['before']:+.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="c04f6a3", help="git ref of the code before")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--before-tree", help="a checkout whose code, unpatched, is 'before'")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(json.loads(args.child))))
        return
    results = {}
    for seed in args.seeds:
        for arm, before in (("before", args.before), ("after", None)):
            tree = args.before_tree if arm == "before" else None
            before = None if tree else before
            results[(arm, seed)] = in_subprocess({"before": before, "seed": seed}, tree)
            print(f"{arm} seed {seed}: {results[(arm, seed)]}", file=sys.stderr)
    print(table(results, args.seeds))
    print(spread(results, args.seeds))


if __name__ == "__main__":
    main()

"""Peak memory and throughput of streamed training as the data grows, against the in-memory path.

    python benchmarks/streaming_memory.py            # 1.25M .. 20M rows (about 10 min on 2 cores)
    python benchmarks/streaming_memory.py --quick    # 0.25M .. 2M rows (a few minutes)

Synthetic impression logs are written as day partitions (``day=YYYY-MM-DD/part-K.parquet``, 1.25M
rows a day, two files, row groups of 256Ki rows) into a temporary folder; each size is a folder of
links to the first n days. Every measurement runs in a fresh subprocess, so its peak RSS
(``ru_maxrss``) is its own:

- ``stream``: ``watchnext.train.streaming.train_stream`` over the days, one pass each;
- ``memory``: the in-memory path, ``read_tables`` + ``FeatureEncoder.fit/transform`` + one epoch
  of ``Ranker.fit``'s loop over a table (only up to ``--memory-max-rows``: its memory grows with the data).

Throughput is reported three ways, because they answer different questions:
- training examples/s: rows / wall seconds of the training pass. For ``stream`` that pass also
  reads, decodes, validates and encodes (on a prefetch thread); for ``memory`` the data is already
  encoded, so this is the most favourable view of the in-memory path;
- examples per CPU-second of the same pass (all threads): stable when other work shares the
  machine, and it counts the prefetch thread's work instead of hiding it on a spare core;
- end-to-end examples/s: rows / wall seconds of the whole run (the streaming pre-pass, or
  reading and encoding everything in memory, included).
Sizes run through both paths are measured ``--repeats`` times, interleaved, and the best run of
each is kept (other processes only ever make a run slower).

Both paths use one torch thread. The model is deliberately small (a hashed user id, a video id
vocabulary, one numeric feature; MMoE with 2 experts of 8 units): this measures the input pipeline
and its memory, not the model, whose per-example cost is the same in both paths.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CONFIG = {
    "name": "streaming-benchmark",
    "features": [
        {"name": "user_id", "kind": "categorical", "embedding_dim": 4, "hash_buckets": 1 << 16},
        {"name": "video_id", "kind": "categorical", "embedding_dim": 4, "max_vocab": 20_000},
        {"name": "duration", "kind": "numeric", "column": "duration_s",
         "transform": "log1p_standardize"},
    ],
    "tasks": [
        {"name": "click", "type": "binary", "label": "click", "group": "engagement"},
        {"name": "like", "type": "binary", "label": "like", "group": "satisfaction"},
    ],
    "bias": {"position": "position", "device": "device", "max_position": 10},
    "model": {"kind": "mmoe", "bottom_units": [16], "num_experts": 2, "expert_units": [8],
              "tower_units": [4]},
    "train": {"batch_size": 4096, "learning_rate": 0.002, "max_epochs": 1, "seed": 0,
              "progress": False, "threads": 1},
}


def write_day(folder: Path, rows: int, files: int, seed: int, row_group: int) -> None:
    """One day of impressions: a hashed user id, a Zipf video id, device, position, labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(files):
        n = rows // files
        video = np.minimum(rng.zipf(1.3, n), 50_000).astype(np.int32)
        position = rng.integers(1, 11, n).astype(np.int8)
        p_click = 1 / (1 + np.exp(-(1.0 - 0.2 * position - 0.3 * np.log(video))))
        table = pa.table({
            "user_id": rng.integers(0, 10_000_000, n),
            "video_id": video,
            "device": rng.integers(0, 3, n).astype(np.int8),
            "position": position,
            "duration_s": rng.exponential(60, n).astype(np.float32),
            "click": (rng.random(n) < p_click).astype(np.int8),
            "like": (rng.random(n) < 0.05).astype(np.int8),
        })
        pq.write_table(table, folder / f"part-{k}.parquet", row_group_size=row_group)


def generate(root: Path, days: int, rows_per_day: int, files: int, row_group: int) -> list[Path]:
    start = datetime.date(2024, 1, 1)
    folders = []
    for d in range(days):
        folder = root / f"day={start + datetime.timedelta(days=d)}"
        if not folder.exists():
            write_day(folder, rows_per_day, files, seed=d, row_group=row_group)
        folders.append(folder)
    return folders


def subset(root: Path, folders: list[Path], n: int) -> Path:
    """A folder whose day partitions are links to the first ``n`` generated days."""
    target = root / f"first-{n}-days"
    target.mkdir(exist_ok=True)
    for folder in folders[:n]:
        link = target / folder.name
        if not link.exists():
            link.symlink_to(folder.resolve(), target_is_directory=True)
    return target


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_stream(data: Path, out: Path, prefetch: int) -> dict:
    from watchnext.config import config_from_dict
    from watchnext.train.loop import LoopOptions
    from watchnext.train.streaming import train_stream

    started = time.perf_counter()
    result = train_stream(config_from_dict(CONFIG), data, out,
                          LoopOptions(checkpoint_every=1000, prefetch=prefetch))
    total = time.perf_counter() - started
    days = result.metrics["days"]
    rows = sum(d["rows_trained"] for d in days)
    train_s = sum(d["seconds"] for d in days)
    cpu_s = sum(d["cpu_seconds"] for d in days)
    return {"path": "stream", "rows": rows, "peak_rss_mib": peak_rss_mib(), "train_s": train_s,
            "cpu_s": cpu_s, "prepare_s": total - train_s, "total_s": total}


def worker_memory(data: Path) -> dict:
    from watchnext.config import config_from_dict
    from watchnext.data.encoder import FeatureEncoder
    from watchnext.data.io import read_tables
    from watchnext.train.loop import LoopOptions, train
    from watchnext.train.sources import TableSource
    from watchnext.train.speed import apply_process_settings

    cfg = config_from_dict(CONFIG)
    apply_process_settings(cfg.train)
    started = time.perf_counter()
    files = sorted(str(p) for p in data.glob("day=*/*.parquet"))
    table = read_tables(files)
    encoder = FeatureEncoder(cfg).fit(table)
    batch = encoder.transform(table)
    del table
    result = train(cfg, TableSource([("all", batch)], encoder),
                   options=LoopOptions(epochs_per_day=cfg.train.max_epochs))
    total = time.perf_counter() - started
    day = result.metrics["days"][0]  # timed by the loop, exactly as the streamed days are
    return {"path": "memory", "rows": day["rows_trained"], "peak_rss_mib": peak_rss_mib(),
            "train_s": day["seconds"], "cpu_s": day["cpu_seconds"],
            "prepare_s": total - day["seconds"], "total_s": total}


def measure(kind: str, data: Path, out: Path, prefetch: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(data), "--out", str(out),
           "--prefetch", str(prefetch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{kind} worker failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.25M .. 2M rows")
    parser.add_argument("--memory-max-rows", type=int, default=5_000_000,
                        help="largest size also run through the in-memory path")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved stream/in-memory runs per compared size (best is kept)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data here")
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--worker", choices=["stream", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker_stream(args.data, args.out, args.prefetch) if args.worker == "stream" \
            else worker_memory(args.data)
        print(json.dumps(result))
        return

    rows_per_day, day_counts = (250_000, [1, 2, 4, 8]) if args.quick else \
        (1_250_000, [1, 2, 4, 8, 16])
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        folders = generate(root / "days", max(day_counts), rows_per_day, files=2,
                           row_group=min(262_144, rows_per_day // 2))
        size = sum(p.stat().st_size for p in (root / "days").rglob("*.parquet"))
        print(f"generated {max(day_counts) * rows_per_day:,} rows in {max(day_counts)} days "
              f"({size / 2**20:,.0f} MiB Parquet) in {time.perf_counter() - started:.0f} s",
              flush=True)
        results = []
        for n in day_counts:
            data = subset(root, folders, n)
            compared = n * rows_per_day <= args.memory_max_rows
            for rep in range(args.repeats if compared else 1):
                for kind in ["stream", "memory"] if compared else ["stream"]:
                    r = measure(kind, data, root / f"run-{kind}-{n}-{rep}", args.prefetch)
                    results.append(r)
                    print(f"{r['path']:>6}  {r['rows']:>11,} rows  peak RSS {r['peak_rss_mib']:>6,.0f} MiB"
                          f"  {r['rows'] / r['train_s']:>8,.0f} examples/s  "
                          f"{r['rows'] / r['cpu_s']:>8,.0f} examples/CPU-s  (train {r['train_s']:.1f} s, "
                          f"prepare {r['prepare_s']:.1f} s)", flush=True)
    report(results)


def _best(results: list[dict], path: str, rows: int) -> dict | None:
    runs = [r for r in results if r["path"] == path and r["rows"] == rows]
    if not runs:
        return None
    return {"peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "wall": max(r["rows"] / r["train_s"] for r in runs),
            "cpu": max(r["rows"] / r["cpu_s"] for r in runs),
            "e2e": max(r["rows"] / r["total_s"] for r in runs), "runs": len(runs)}


def report(results: list[dict]) -> None:
    sizes = sorted({r["rows"] for r in results})
    print("\n| rows | streaming peak RSS (MiB) | in-memory peak RSS (MiB) | streaming examples/s "
          "| in-memory examples/s | ratio | streaming examples/CPU-s | in-memory examples/CPU-s "
          "| ratio | streaming end-to-end examples/s | in-memory end-to-end examples/s | ratio |")
    print("|---:" * 13 + "|")
    ratios: dict[str, list[float]] = {"wall": [], "cpu": [], "e2e": []}
    for rows in sizes:
        s, m = _best(results, "stream", rows), _best(results, "memory", rows)
        cells = [f"{rows:,}", f"{s['peak_rss_mib']:,.0f}", f"{m['peak_rss_mib']:,.0f}" if m else "-"]
        for key in ("wall", "cpu", "e2e"):
            cells += [f"{s[key]:,.0f}", f"{m[key]:,.0f}" if m else "-",
                      f"{s[key] / m[key]:.2f}" if m else "-"]
            if m:
                ratios[key].append(s[key] / m[key])
        print("| " + " | ".join(cells) + " |")
    rss = [_best(results, "stream", rows)["peak_rss_mib"] for rows in sizes]
    print(f"\nstreaming peak RSS, smallest -> largest: {rss[0]:,.0f} -> {rss[-1]:,.0f} MiB "
          f"({rss[-1] / rss[0] - 1:+.1%}; max/min over all sizes {max(rss) / min(rss) - 1:+.1%}): "
          f"{'flat within 20%' if max(rss) / min(rss) <= 1.2 else 'NOT flat within 20%'}")
    for key, label in (("wall", "training examples/s"), ("cpu", "examples per CPU-second"),
                       ("e2e", "end-to-end examples/s")):
        if ratios[key]:
            verdict = "within 20%" if min(ratios[key]) >= 0.8 else "NOT within 20%"
            print(f"streaming / in-memory, {label}: "
                  f"{', '.join(f'{x:.2f}' for x in ratios[key])}: {verdict}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

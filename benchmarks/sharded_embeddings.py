"""Per-process memory and speed of replicated (DDP) vs sharded (TorchRec) id tables, 2 processes.

    python benchmarks/sharded_embeddings.py                        # 1M to 50M ids per table
    python benchmarks/sharded_embeddings.py --vocab 1000000 --rows 40960   # one small point

Two hashed id features (``user_id``, ``video_id``) of ``V`` rows x 16 floats each, one numeric
feature, one task; ``torchrun --nproc-per-node 2`` (gloo, one thread per process) trains one pass
over ``--rows`` synthetic rows, batch 4096, in each mode:

- ``ddp``: ``train.embeddings = "local"`` with ``train.sparse_embeddings = true`` (row-wise Adam:
  today's path for large id spaces): every process holds both tables and both Adam moments;
- ``sharded``: ``train.embeddings = "sharded"``: the planner puts one table on each process,
  trained by FBGEMM's fused row-wise Adagrad (one float of state per row).

Per process it reports the peak RSS (VmHWM) of the training run, and examples/s of the training
pass; and the bytes of tables + optimiser state each process holds by construction. Nothing is
written and the end-of-run export is skipped: it gathers the sharded tables on rank 0 (see
docs/distributed.md, Limits), which is not what this measures.
The ratio sharded / ddp is printed for each vocabulary measured in both modes.

Memory guard (the machine is shared): before each point the expected need (2 processes x the
table bytes each holds, plus 1.5 GiB) is compared with MemAvailable; a point that would leave less
than ``--reserve-gib`` (4) is not started, and a running point is killed when MemAvailable falls
under it. Both are reported as "stopped", never as a result.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DIM, TABLES, BATCH = 16, 2, 4096
GIB = 1 << 30


def config(vocab: int, mode: str) -> dict:
    sharded = mode == "sharded"
    return {
        "name": f"sharded-embeddings-{mode}",
        "features": [
            {"name": "user_id", "kind": "categorical", "embedding_dim": DIM, "hash_buckets": vocab},
            {"name": "video_id", "kind": "categorical", "embedding_dim": DIM, "hash_buckets": vocab},
            {"name": "duration", "kind": "numeric", "column": "duration_s",
             "transform": "log1p_standardize"},
        ],
        "tasks": [{"name": "click", "type": "binary", "label": "click", "group": "engagement"}],
        "bias": {"position": ""},
        "model": {"kind": "mmoe", "bottom_units": [32], "num_experts": 2, "expert_units": [16],
                  "tower_units": [8]},
        "train": {"batch_size": BATCH, "learning_rate": 1e-3, "seed": 0, "progress": False,
                  "threads": 1, "embeddings": "sharded" if sharded else "local",
                  "sparse_embeddings": not sharded},
    }


def table_bytes_per_process(vocab: int, mode: str, world: int = 2) -> int:
    """Tables + optimiser state one process holds, by construction (float32)."""
    rows = vocab + 2  # MISSING and OOV rows
    if mode == "ddp":
        return TABLES * rows * DIM * 4 * 3  # weights, Adam's two moments
    return TABLES // world * rows * (DIM * 4 + 4)  # its table, one Adagrad float per row


def write_data(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    duration = rng.integers(5, 600, rows).astype(np.float64)
    users, videos = rng.integers(0, 10**12, rows), rng.integers(0, 10**12, rows)
    click = (rng.random(rows) < 1 / (1 + np.exp(-(np.log(duration) - 4)))).astype(np.int64)
    day = path / "day=2024-03-01"
    day.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": users, "video_id": videos, "duration_s": duration,
                             "click": click}), day / "part-0.parquet")


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))


def child(cfg_path: str, data: str, out: str) -> None:
    """One torchrun process: train, record peak RSS before the export, write it per rank."""
    from watchnext.config import load_config
    from watchnext.train import step
    from watchnext.train.loop import LoopOptions, train
    from watchnext.train.sources import ParquetSource
    from watchnext.train.speed import apply_process_settings

    peak: dict[str, float] = {}

    def no_export(self: step.TrainStep):  # noqa: ANN202 - the benchmark's probe
        """Read the peak when training is over; skip the export, which is not measured here."""
        with open("/proc/self/status") as f:
            peak["rss_mib"] = next(int(x.split()[1]) for x in f if x.startswith("VmHWM")) / 1024
        return self.model

    step.TrainStep.export = no_export
    config = load_config(cfg_path)
    apply_process_settings(config.train)
    result = train(config, ParquetSource(data), None, LoopOptions(shuffle_buffer=BATCH * 4))
    day = result.metrics["days"][0]
    rank = int(os.environ.get("RANK", "0"))
    Path(out, f"rank-{rank}.json").write_text(json.dumps({
        **peak, "examples_per_s": day["rows_trained"] / day["seconds"]}))


def run_point(root: Path, vocab: int, mode: str, reserve: int) -> dict:
    cfg = root / f"{mode}-{vocab}.json"
    cfg.write_text(json.dumps(config(vocab, mode)))
    out = root / f"out-{mode}-{vocab}"
    out.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc-per-node", "2", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", __file__, "--child", str(cfg),
               str(root / "data"), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lowest = available_bytes()
    while proc.poll() is None:
        lowest = min(lowest, available_bytes())
        if lowest < reserve:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"stopped": f"MemAvailable fell under {reserve / GIB:.0f} GiB"}
        time.sleep(0.2)
    log = proc.stdout.read()
    if proc.returncode:
        return {"stopped": f"exit {proc.returncode}: {log[-800:]}"}
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    return {"rss_mib": [r["rss_mib"] for r in ranks],
            "examples_per_s": min(r["examples_per_s"] for r in ranks),
            "wall_s": time.perf_counter() - started, "lowest_available_gib": lowest / GIB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, nargs="*",
                        default=[1_000_000, 10_000_000, 15_000_000, 25_000_000, 50_000_000])
    parser.add_argument("--rows", type=int, default=81_920)
    parser.add_argument("--reserve-gib", type=float, default=4.0)
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    reserve = int(args.reserve_gib * GIB)
    results: dict[str, dict[str, dict]] = {}
    print("| ids per table | mode | tables + optimiser per process (MiB) | peak RSS rank 0 / 1 (MiB) "
          "| examples/s | sharded / ddp peak RSS |")
    print("|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_data(root / "data", args.rows)
        for vocab in args.vocab:
            for mode in ("ddp", "sharded"):
                held = table_bytes_per_process(vocab, mode)
                need = 2 * held + int(1.5 * GIB)
                if available_bytes() - need < reserve:
                    r = {"stopped": f"not started: needs ~{need / GIB:.1f} GiB, "
                                    f"{available_bytes() / GIB:.1f} GiB available"}
                else:
                    r = run_point(root, vocab, mode, reserve)
                results.setdefault(str(vocab), {})[mode] = {**r, "held_bytes": held}
                if "stopped" in r:
                    print(f"| {vocab:,} | {mode} | {held / 2**20:,.0f} | stopped: "
                          f"{r['stopped'].splitlines()[0]} | | |", flush=True)
                    continue
                ratio = ""
                ddp = results[str(vocab)].get("ddp", {})
                if mode == "sharded" and "rss_mib" in ddp:
                    ratio = f"{max(r['rss_mib']) / max(ddp['rss_mib']):.2f}"
                print(f"| {vocab:,} | {mode} | {held / 2**20:,.0f} | "
                      f"{r['rss_mib'][0]:,.0f} / {r['rss_mib'][1]:,.0f} | "
                      f"{r['examples_per_s']:,.0f} | {ratio} |", flush=True)
    trained = {mode: max((int(v) for v, m in results.items() if "rss_mib" in m.get(mode, {})),
                         default=0) for mode in ("ddp", "sharded")}
    print(f"\nlargest vocabulary trained with 2 processes: ddp {trained['ddp']:,} ids per table, "
          f"sharded {trained['sharded']:,} ids per table ({args.rows:,} rows, batch {BATCH}, "
          f"2 tables x {DIM} floats)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

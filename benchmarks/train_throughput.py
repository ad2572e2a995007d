"""Training throughput on a fixed standard workload: watchnext beside DeepCTR-Torch and the roofline.

    .venv/bin/python benchmarks/train_throughput.py            # standard workload, 1,000,000 rows
    .venv/bin/python benchmarks/train_throughput.py --quick    # 100,000 rows, a few minutes

The workload is fixed so figures stay comparable across versions: 10 categorical features of
100,000 ids each (embedding dim 16), 5 dense features, 7 binary tasks, MMoE with 8 experts of ReLU
layers (256, 128), towers (64,), batch 4096, Adam (lr 1e-3), 2 threads, one epoch.

Every model runs in a fresh subprocess that regenerates the same synthetic data from the same
seed, so peak RSS is the model's own and no cache is shared. Peak RSS is the process's high-water
mark during training and evaluation, with the input data already resident (reset after the data
is prepared). Machines are shared and noisy: read the ratios, which come from one run.

MFU (model-FLOP utilisation) = multiplications per example x 2 FLOPs x 3 (forward + backward)
x training examples/s / the measured fp32 matmul throughput (we train in fp32: see
docs/performance.md for why bf16 is not used on CPUs without a bf16 matrix path).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

ROWS, QUICK_ROWS = 1_000_000, 100_000
CATEGORICAL, IDS, DIM, DENSE, TASKS = 10, 100_000, 16, 5, 7
EXPERTS, EXPERT_UNITS, TOWER_UNITS, PAPER_BOTTOM = 8, (256, 128), (64,), (128,)
BATCH, THREADS, LR, SEED = 4096, 2, 1e-3, 0
EVAL_BATCH = BATCH  # evaluation (predict) batch, the same for every library

# name -> what runs in the child: library, watchnext model and [train] overrides. watchnext rows
# use row-wise embedding updates (train.sparse_embeddings) unless they say "dense Adam" or "fused
# row-wise Adagrad" (train.embeddings = "sharded" in one process: TorchRec's FBGEMM kernels, the
# `sharded` extra).
PEER_MODEL = {"kind": "mmoe", "bottom_units": [], "gate_input": "input"}
ROWWISE = {"sparse_embeddings": True}
RUNS: dict[str, dict[str, Any]] = {
    "watchnext MMoE (peer architecture)": {"lib": "watchnext", "model": PEER_MODEL, "train": ROWWISE},
    "watchnext MMoE (peer architecture, dense Adam)": {"lib": "watchnext", "model": PEER_MODEL},
    "watchnext MMoE (peer architecture, fused row-wise Adagrad)": {
        "lib": "watchnext", "model": PEER_MODEL, "train": {"embeddings": "sharded"}},
    "watchnext MMoE (paper: shared bottom 128)": {
        "lib": "watchnext", "train": ROWWISE,
        "model": {"kind": "mmoe", "bottom_units": list(PAPER_BOTTOM), "gate_input": "bottom"}},
    "watchnext SharedBottom (256, 128)": {
        "lib": "watchnext", "train": ROWWISE,
        "model": {"kind": "shared_bottom", "bottom_units": list(EXPERT_UNITS)}},
    "DeepCTR-Torch MMOE": {"lib": "deepctr", "env": {"OMP_WAIT_POLICY": None}},
}
# the process settings watchnext makes (OMP_WAIT_POLICY=PASSIVE in the `watchnext` command, glibc
# keeping freed memory with train.retain_freed_memory), given to the peer as well (--peer-tuned)
# through the equivalent environment variables, so the ratio can be read with and without them
PEER_TUNED = {"DeepCTR-Torch MMOE + watchnext's process settings": {
    "lib": "deepctr", "env": {"OMP_WAIT_POLICY": "PASSIVE", "MALLOC_MMAP_MAX_": "0",
                              "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}}}
PEER_PAIR = ("watchnext MMoE (peer architecture)", "DeepCTR-Torch MMOE")


def make_data(rows: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Ids uniform over 100,000 per feature; each task's label is Bernoulli(sigmoid(logit)) with a
    logit from per-id effects and the dense features, so there is something to learn."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, IDS, size=(rows, CATEGORICAL), dtype=np.int64)
    dense = rng.standard_normal((rows, DENSE), dtype=np.float32)
    logits = dense @ rng.standard_normal((DENSE, TASKS), dtype=np.float32) * 0.5 - 1.5
    for f in range(CATEGORICAL):
        effects = rng.standard_normal((IDS, TASKS), dtype=np.float32) * 0.3
        logits += effects[ids[:, f]]
    labels = (rng.random((rows, TASKS), dtype=np.float32) < 1 / (1 + np.exp(-logits)))
    return {"ids": ids, "dense": dense, "labels": labels.astype(np.float32)}


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def mean_auc(labels: np.ndarray, preds: np.ndarray) -> float:
    from watchnext.evaluate.metrics import auc
    return float(np.mean([auc(labels[:, t], preds[:, t]) for t in range(labels.shape[1])]))


def matmul_gflops(dtype_name: str, seconds: float = 2.0) -> float:
    """Median GFLOP/s of a large matmul (4096 x 1024 @ 1024 x 1024; bf16 smaller: it may be slow)."""
    import torch
    torch.set_num_threads(THREADS)
    dtype = getattr(torch, dtype_name)
    m, k, n = (4096, 1024, 1024) if dtype == torch.float32 else (1024, 512, 512)
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / statistics.median(times) / 1e9


def workload_config(model: dict[str, Any], train: dict[str, Any]):
    from watchnext.config import config_from_dict
    return config_from_dict({
        "name": "throughput",
        "data": {"user_column": ""},
        "features": [{"name": f"c{i}", "kind": "categorical", "embedding_dim": DIM}
                     for i in range(CATEGORICAL)]
        + [{"name": f"d{i}", "kind": "numeric"} for i in range(DENSE)],
        "tasks": [{"name": f"t{i}", "type": "binary", "label": f"y{i}",
                   "group": "engagement" if i < 3 else "satisfaction"} for i in range(TASKS)],
        "model": {"num_experts": EXPERTS, "expert_units": list(EXPERT_UNITS),
                  "tower_units": list(TOWER_UNITS), "gate_dropout": 0.0, "dropout": 0.0, **model},
        "train": {"batch_size": BATCH, "learning_rate": LR, "threads": THREADS, "seed": SEED,
                  "max_epochs": 1, "progress": False, **train},
    })


def run_watchnext(rows: int, model: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: what `watchnext` sets
    import pyarrow as pa

    from watchnext.data.encoder import FeatureEncoder
    from watchnext.evaluate.report import predict_batch
    from watchnext.model.cost import multiplications
    from watchnext.train import loop
    from watchnext.train.sources import TableSource
    from watchnext.train.speed import apply_process_settings

    config = workload_config(model, train)
    apply_process_settings(config.train)  # threads = THREADS, and the allocator setting
    data = make_data(rows)
    table = pa.table({**{f"c{i}": data["ids"][:, i] for i in range(CATEGORICAL)},
                      **{f"d{i}": data["dense"][:, i] for i in range(DENSE)},
                      **{f"y{i}": data["labels"][:, i] for i in range(TASKS)}})
    encoder = FeatureEncoder(config).fit(table)
    batch = encoder.transform(table)
    labels = data["labels"]
    del table, data
    gc.collect()
    pa.default_memory_pool().release_unused()  # the Arrow copy of the synthetic data, now freed
    reset_peak_rss()
    result = loop.train(config, TableSource([("workload", batch)], encoder),  # SEED: the model
                        options=loop.LoopOptions(epochs_per_day=1))
    train_s = result.metrics["days"][0]["seconds"]  # the epoch, as the loop timed it
    ranker = result.model
    start = time.perf_counter()
    preds, _ = predict_batch(ranker, batch, chunk_size=EVAL_BATCH, gates=False)
    eval_s = time.perf_counter() - start
    return {"train_s": train_s, "eval_s": eval_s, "rss_mb": peak_rss_mb(),
            "mults": multiplications(ranker)["serving"], "auc": mean_auc(labels, preds)}


def run_deepctr(rows: int) -> dict[str, Any]:
    """DeepCTR-Torch's own fit/predict, same sizes; its L2 on embeddings is off as ours is."""
    import torch
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import MMOE

    torch.set_num_threads(THREADS)
    data = make_data(rows)
    columns = [SparseFeat(f"c{i}", IDS, embedding_dim=DIM) for i in range(CATEGORICAL)] + \
        [DenseFeat(f"d{i}", 1) for i in range(DENSE)]
    x = {**{f"c{i}": data["ids"][:, i] for i in range(CATEGORICAL)},
         **{f"d{i}": data["dense"][:, i] for i in range(DENSE)}}
    labels = data["labels"]
    del data
    gc.collect()
    model = MMOE(columns, num_experts=EXPERTS, expert_dnn_hidden_units=EXPERT_UNITS,
                 gate_dnn_hidden_units=(), tower_dnn_hidden_units=TOWER_UNITS,
                 l2_reg_embedding=0.0, l2_reg_linear=0.0, task_types=["binary"] * TASKS,
                 task_names=[f"t{i}" for i in range(TASKS)], seed=SEED)
    model.compile(torch.optim.Adam(model.parameters(), lr=LR), loss=["binary_crossentropy"] * TASKS)
    reset_peak_rss()
    start = time.perf_counter()
    model.fit(x, labels, batch_size=BATCH, epochs=1, verbose=0, shuffle=True)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    preds = model.predict(x, batch_size=EVAL_BATCH)
    eval_s = time.perf_counter() - start
    mults = sum(m.in_features * m.out_features for m in model.modules()
                if isinstance(m, torch.nn.Linear))
    return {"train_s": train_s, "eval_s": eval_s, "rss_mb": peak_rss_mb(), "mults": mults,
            "auc": mean_auc(labels, preds)}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["lib"] == "roofline":
        return {"fp32": matmul_gflops("float32"), "bf16": matmul_gflops("bfloat16")}
    if spec["lib"] == "deepctr":
        return run_deepctr(spec["rows"])
    return run_watchnext(spec["rows"], spec["model"], spec.get("train", {}))


def in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, **spec.get("env", {})}
    env = {k: v for k, v in env.items() if v is not None}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict[str, Any]], roof: dict[str, float], rows: int, repeats: int
          ) -> str:
    header = ["model", "mults/example", "train ex/s", "eval ex/s", "peak RSS MB", "MFU (fp32)",
              "mean AUC"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in results.items():
        train_eps, eval_eps = rows / r["train_s"], rows / r["eval_s"]
        mfu = r["mults"] * 2 * 3 * train_eps / (roof["fp32"] * 1e9)
        lines.append(f"| {name} | {r['mults']:,} | {train_eps:,.0f} | {eval_eps:,.0f} | "
                     f"{r['rss_mb']:,.0f} | {mfu:.1%} | {r['auc']:.4f} |")
    lines.append("")
    ours = results.get(PEER_PAIR[0])
    for peer in (PEER_PAIR[1], *PEER_TUNED):
        theirs = results.get(peer)
        if ours and theirs:
            lines.append(f"ours / {peer} (same architecture): training "
                         f"{theirs['train_s'] / ours['train_s']:.2f}x, evaluation "
                         f"{theirs['eval_s'] / ours['eval_s']:.2f}x, peak RSS "
                         f"{ours['rss_mb'] / theirs['rss_mb']:.2f}x")
    lines.append(f"matmul roofline ({THREADS} threads): fp32 {roof['fp32']:.1f} GFLOP/s, "
                 f"bf16 {roof['bf16']:.1f} GFLOP/s; {rows:,} rows, batch {BATCH}, one epoch; "
                 f"best of {repeats} interleaved tries per figure")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {ROWS:,}")
    parser.add_argument("--rows", type=int, help="override the number of rows")
    parser.add_argument("--only", nargs="*", help="run only models whose name contains one of these")
    parser.add_argument("--train", default="{}", help="JSON overrides of [train] for watchnext runs")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every model this many times, interleaved; report each one's best")
    parser.add_argument("--peer-tuned", action="store_true",
                        help="add a DeepCTR-Torch row run with watchnext's process settings")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    rows = args.rows or (QUICK_ROWS if args.quick else ROWS)
    train = json.loads(args.train)
    runs = {**RUNS, **(PEER_TUNED if args.peer_tuned else {})}
    runs = {name: spec for name, spec in runs.items()
            if not args.only or any(s.lower() in name.lower() for s in args.only)}
    roofs: list[dict[str, float]] = []
    tries: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        roofs.append(in_subprocess({"lib": "roofline"}))
        for name, spec in runs.items():
            tries[name].append(in_subprocess({**spec, "rows": rows,
                                              "train": {**spec.get("train", {}), **train}}))
            print(f"{name}: {rows / tries[name][-1]['train_s']:,.0f} train ex/s", file=sys.stderr)
    roof = {k: max(r[k] for r in roofs) for k in roofs[0]}
    results = {name: min(t, key=lambda r: r["train_s"]) for name, t in tries.items()}
    for name, t in tries.items():  # best evaluation time too, each from its own try
        results[name] = {**results[name], "eval_s": min(r["eval_s"] for r in t)}
    print(table(results, roof, rows, args.repeats))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "roofline": roofs, "tries": tries}, f, indent=2)


if __name__ == "__main__":
    main()

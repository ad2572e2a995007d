"""Before/after for each training-speed lever, measured step by step in ONE process.

    .venv/bin/python benchmarks/speed_levers.py                      # all levers, 2 threads
    .venv/bin/python benchmarks/speed_levers.py --only "dense Adam" RowWiseAdam --steps 30
    .venv/bin/python benchmarks/speed_levers.py --env-ab --rounds 3       # OpenMP wait, malloc

On a shared machine the load drifts by several x within minutes, so levers are not timed one
after another: every variant is built side by side (same seed, same minibatches) and the steps
are interleaved, one step of each variant per round. The table gives the median step time over
the rounds and the ratio to the first row; the workload is the peer-architecture MMoE of
benchmarks/train_throughput.py (100,000-row tables, batch 4096). OpenMP's wait policy and the
glibc allocator setting (``train.retain_freed_memory``) act process-wide: ``--env-ab`` runs the
RowWiseAdam variant in fresh processes under each setting, alternating them for ``--rounds``
rounds, and reports medians. In the lever table every variant runs with watchnext's defaults.

- "DeepCTR-Torch step": DeepCTR-Torch's MMOE and its training step as in its ``fit`` (forward,
  summed per-task BCE, Adam), minus its DataLoader: the model's own cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import train_throughput as tt

PEER = {"kind": "mmoe", "bottom_units": [], "gate_input": "input"}
SPARSE = {"sparse_embeddings": True}
LEVERS: dict[str, dict[str, Any]] = {
    "dense Adam over whole tables (before)": {"train": {}},
    "sparse rows + torch SparseAdam": {"train": SPARSE, "torch_sparse_adam": True},
    "sparse rows + RowWiseAdam": {"train": SPARSE},
    "  with experts as a Python loop": {"train": SPARSE, "loop": True},
    "  with torch.compile": {"train": {**SPARSE, "compile": True}},
    "  with bf16 autocast": {"train": {**SPARSE, "precision": "bf16"}},
    "DeepCTR-Torch step (same sizes)": {"deepctr": True},
}
# process-wide settings, compared across processes (--env-ab): OpenMP's wait policy
# (OMP_WAIT_POLICY="" makes libgomp warn and keep its default, spin then sleep; watchnext's default
# is PASSIVE) and glibc keeping freed memory (train.retain_freed_memory, on by default)
SETTINGS: dict[str, dict[str, Any]] = {
    "libgomp default wait, glibc default malloc (before)": {
        "env": {"OMP_WAIT_POLICY": ""}, "train": {"retain_freed_memory": False}},
    "OMP_WAIT_POLICY=PASSIVE": {
        "env": {"OMP_WAIT_POLICY": "PASSIVE"}, "train": {"retain_freed_memory": False}},
    "PASSIVE + train.retain_freed_memory (watchnext default)": {
        "env": {"OMP_WAIT_POLICY": "PASSIVE"}, "train": {"retain_freed_memory": True}},
}


def loop_forward(self, x):
    """GroupedMLP.forward as a Python loop over members, as DeepCTR-Torch runs its experts."""
    import torch
    outs = []
    last = len(self.weights) - 1
    for g in range(self.groups):
        h = x if x.dim() == 2 else x[g]
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.addmm(b[g], h, w[g])
            if i < last or self.final_relu:
                h = torch.relu(h)
        outs.append(h)
    return torch.stack(outs)


def watchnext_trainer(lever: dict[str, Any], encoder, threads: int) -> Any:
    import torch

    from watchnext.model.layers import GroupedMLP
    from watchnext.model.ranker import MultitaskRanker
    from watchnext.train.distributed import Distributed
    from watchnext.train.optim import make_optimizer
    from watchnext.train.speed import apply_process_settings
    from watchnext.train.step import TrainStep

    config = tt.workload_config(PEER, {**lever["train"], **TRAIN_OVERRIDES, "threads": threads})
    apply_process_settings(config.train)  # as Ranker.fit does
    torch.manual_seed(tt.SEED)
    model = MultitaskRanker(config, encoder, sparse=config.train.sparse_embeddings)
    if lever.get("loop"):
        for module in model.modules():
            if isinstance(module, GroupedMLP):
                module.forward = types.MethodType(loop_forward, module)
    trainer = TrainStep(config, model, Distributed())
    if lever.get("torch_sparse_adam"):
        trainer.optimizer = make_optimizer(model, config, torch.optim.SparseAdam)
    return trainer


def deepctr_step(data: dict[str, Any]) -> Callable[[int], None]:
    import numpy as np
    import torch
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import MMOE
    from torch.nn import functional as F

    columns = [SparseFeat(f"c{i}", tt.IDS, embedding_dim=tt.DIM) for i in range(tt.CATEGORICAL)] + \
        [DenseFeat(f"d{i}", 1) for i in range(tt.DENSE)]
    model = MMOE(columns, num_experts=tt.EXPERTS, expert_dnn_hidden_units=tt.EXPERT_UNITS,
                 gate_dnn_hidden_units=(), tower_dnn_hidden_units=tt.TOWER_UNITS,
                 l2_reg_embedding=0.0, l2_reg_linear=0.0, task_types=["binary"] * tt.TASKS,
                 task_names=[f"t{i}" for i in range(tt.TASKS)], seed=tt.SEED)
    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=tt.LR)
    x = torch.from_numpy(np.concatenate([data["ids"], data["dense"]], axis=1)).float()
    y = torch.from_numpy(data["labels"])

    def step(i: int) -> None:  # the body of DeepCTR-Torch's BaseModel.fit loop
        rows = ORDERS[i]
        pred = model(x[rows])
        optim.zero_grad()
        loss = sum(F.binary_cross_entropy(pred[:, t], y[rows, t], reduction="sum")
                   for t in range(tt.TASKS))
        (loss + model.get_regularization_loss() + model.aux_loss).backward()
        optim.step()
    return step


BATCHES: list[Any] = []
ORDERS: list[Any] = []
TRAIN_OVERRIDES: dict[str, Any] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first")
    parser.add_argument("--threads", type=int, default=tt.THREADS)
    parser.add_argument("--only", nargs="*", help="levers whose name contains one of these")
    parser.add_argument("--env-ab", action="store_true", help="compare the process-wide settings")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --env-ab")
    parser.add_argument("--breakdown", action="store_true",
                        help="time the RowWiseAdam step's phases and its GEMMs alone")
    parser.add_argument("--train", default="{}", help="JSON overrides of [train] for every lever")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the measured steps of the first lever (torch.profiler)")
    args = parser.parse_args()
    if args.env_ab:
        env_ab(args)
        return
    if args.breakdown:
        args.only = ["RowWiseAdam"]

    TRAIN_OVERRIDES.update(json.loads(args.train))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: what `watchnext` sets
    import pyarrow as pa
    import torch

    from watchnext.data.encoder import FeatureEncoder

    torch.set_num_threads(args.threads)
    levers = {k: v for k, v in LEVERS.items()
              if not args.only or any(s.lower() in k.lower() for s in args.only)}
    batches = args.steps + args.warmup
    data = tt.make_data(tt.BATCH * batches)
    table = pa.table({**{f"c{i}": data["ids"][:, i] for i in range(tt.CATEGORICAL)},
                      **{f"d{i}": data["dense"][:, i] for i in range(tt.DENSE)},
                      **{f"y{i}": data["labels"][:, i] for i in range(tt.TASKS)}})
    encoder = FeatureEncoder(tt.workload_config(PEER, {})).fit(table)
    # tables of the full workload's size (100,000 ids), whatever ids this sample happened to hold
    encoder.vocab_size = lambda _name: tt.IDS + 2
    batch = encoder.transform(table)
    order = torch.randperm(len(batch), generator=torch.Generator().manual_seed(tt.SEED))
    ORDERS.extend(order[i * tt.BATCH:(i + 1) * tt.BATCH] for i in range(batches))
    BATCHES.extend(batch.select(rows) for rows in ORDERS)
    trainers = {name: watchnext_trainer(lever, encoder, args.threads)
                for name, lever in levers.items() if not lever.get("deepctr")}
    steps = {name: deepctr_step(data) if lever.get("deepctr") else
             (lambda i, t=trainers[name]: t([BATCHES[i]], [i])) for name, lever in levers.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    first: dict[str, float] = {}
    for i in range(batches):
        for name, step in steps.items():
            start = time.perf_counter()
            step(i)
            elapsed = time.perf_counter() - start
            if i == 0:
                first[name] = elapsed
            if i >= args.warmup:
                times[name].append(elapsed)
    print_ratios(f"lever ({args.threads} threads, batch {tt.BATCH}, median of {args.steps} "
                 f"interleaved steps)", {n: statistics.median(t) * 1000 for n, t in times.items()},
                 {n: f"{s:.1f}" for n, s in first.items()})
    if args.breakdown:
        breakdown(next(iter(trainers.values())), args)
    if args.profile:  # after the timing, alone: the first lever again over the same batches
        name, step = next(iter(steps.items()))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    record_shapes=True) as prof:
            for i in range(args.warmup, batches):
                step(i)
        print(f"\ntop operators of '{name}' over {args.steps} more steps (self CPU time):")
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=28,
            max_shapes_column_width=60))


def breakdown(trainer: Any, args: argparse.Namespace) -> None:
    """Median ms per phase of a training step, beside the same step's GEMMs run alone.

    The GEMMs alone (same shapes, outputs preallocated, same threads) are what the step would
    cost if everything else were free; the big square matmul is the roofline the MFU uses.
    """
    import torch

    from watchnext.train.losses import per_task_losses, weighted_total

    phases: dict[str, list[float]] = {"forward + losses": [], "backward": [], "optimizer step": []}
    for i in range(len(BATCHES)):
        t0 = time.perf_counter()
        out = trainer.model(BATCHES[i])
        total = weighted_total(per_task_losses(out.logits, BATCHES[i].labels, trainer.model.is_binary),
                               trainer.loss_weights)
        t1 = time.perf_counter()
        trainer.optimizer.zero_grad(set_to_none=True)
        total.backward()
        t2 = time.perf_counter()
        trainer.optimizer.step()
        t3 = time.perf_counter()
        if i >= args.warmup:
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                phases[name].append(seconds)
    medians = {name: statistics.median(t) * 1000 for name, t in phases.items()}
    gemm_ms, gemm_flops = step_gemms_alone(torch)
    roof = tt.matmul_gflops("float32")
    step_ms = sum(medians.values())
    print(f"\n| phase of one step (median of {args.steps}) | ms | share of step |")
    print("|---|---|---|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:,.0f} | {ms / step_ms:.0%} |")
    print(f"| whole step | {step_ms:,.0f} | 100% |")
    print(f"| the step's GEMMs alone (same shapes) | {gemm_ms:,.0f} | {gemm_ms / step_ms:.0%} |")
    print(f"\nGEMMs alone: {gemm_flops / gemm_ms / 1e6:.1f} GFLOP/s; whole step: "
          f"{gemm_flops / step_ms / 1e6:.1f} GFLOP/s; square-matmul roofline {roof:.1f} GFLOP/s")


def step_gemms_alone(torch: Any) -> tuple[float, float]:
    """Every matmul of one peer-architecture step (forward, input and weight gradients)."""
    n, g, d, t, e = tt.BATCH, tt.EXPERTS, tt.CATEGORICAL * tt.DIM + tt.DENSE, tt.TASKS, tt.EXPERTS
    k1, k2, h = *tt.EXPERT_UNITS, tt.TOWER_UNITS[0]
    shapes = [  # (batch, m, k, n) of C[m, n] = A[m, k] @ B[k, n]
        (g, n, d, k1), (g, n, k1, k2), (1, n, d, t * e), (n, t, e, k2), (t, n, k2, h),
        (t, n, h, 1)]
    gemms = []
    for b, m, k, c in shapes:  # forward, input gradient, weight gradient
        gemms += [(b, m, k, c), (b, m, c, k), (b, k, m, c)]
    operands = [(torch.randn(b, m, k), torch.randn(b, k, c), torch.empty(b, m, c))
                for b, m, k, c in gemms]
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for a, b, out in operands:
            torch.bmm(a, b, out=out)
        times.append(time.perf_counter() - start)
    flops = sum(2 * b * m * k * c for b, m, k, c in gemms)
    return statistics.median(times) * 1000, flops


def env_ab(args: argparse.Namespace) -> None:
    medians: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, setting in SETTINGS.items():
            cmd = [sys.executable, __file__, "--only", "RowWiseAdam", "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads),
                   "--train", json.dumps(setting["train"])]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                  env={**os.environ, **setting["env"]})
            row = next(x for x in proc.stdout.splitlines() if x.startswith("| sparse rows"))
            medians[name].append(float(row.split("|")[2].replace(",", "")))
            print(f"{name}: {medians[name][-1]:.0f} ms", file=sys.stderr)
    print_ratios(f"process setting ({args.threads} threads, median over {args.rounds} alternating "
                 f"processes)", {n: statistics.median(ms) for n, ms in medians.items()})


def print_ratios(title: str, ms: dict[str, float], first_step: dict[str, str] | None = None) -> None:
    """A markdown table of ms per step, examples/s and the speed-up over the first row."""
    base = next(iter(ms.values()))
    print(f"| {title} | ms / step | examples/s | vs first row |" + (" first step s |" if first_step else ""))
    print("|---|---|---|---|" + ("---|" if first_step else ""))
    for name, m in ms.items():
        tail = f" {first_step[name]} |" if first_step else ""
        print(f"| {name} | {m:,.0f} | {tt.BATCH / m * 1000:,.0f} | {base / m:.2f}x |{tail}")


if __name__ == "__main__":
    main()

"""Before/after for each training-speed lever, measured step by step in ONE process.

    .venv/bin/python benchmarks/speed_levers.py                      # all levers, 2 threads
    .venv/bin/python benchmarks/speed_levers.py --only baseline sparse --steps 30
    THP_MEM_ALLOC_ENABLE=0 .venv/bin/python benchmarks/speed_levers.py --only sparse   # allocator

On a shared machine the load drifts by several x within minutes, so levers are not timed one
after another: every variant is built side by side (same seed, same minibatches) and the steps
are interleaved, one step of each variant per round. The table gives the median step time over
the rounds and the ratio to the first row; the workload is the peer-architecture MMoE of
benchmarks/train_throughput.py (100,000-row tables, batch 4096). The huge-page allocator setting
acts process-wide, so it is compared by running this script with THP_MEM_ALLOC_ENABLE=0 and =1.

Variants:
- "previous": the code before the speed work (dense Adam over whole tables; the experts' first
  layer as a bmm over an expanded input; out-of-place ReLUs; bias added by baddbmm).
- "DeepCTR-Torch step": DeepCTR-Torch's MMOE and its training step as in its ``fit`` (forward,
  summed per-task BCE, Adam), minus its DataLoader: the model's own cost.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
import types
from collections.abc import Callable
from typing import Any

import train_throughput as tt

PEER = {"kind": "mmoe", "bottom_units": [], "gate_input": "input"}
SPARSE = {"sparse_embeddings": True}
LEVERS: dict[str, dict[str, Any]] = {
    "previous (dense Adam, bmm first layer)": {"train": {}, "previous": True},
    "+ one wide matmul for the first layer": {"train": {}},
    "+ sparse rows + torch SparseAdam": {"train": SPARSE, "torch_sparse_adam": True},
    "+ sparse rows + RowWiseAdam": {"train": SPARSE},
    "  with experts as a Python loop": {"train": SPARSE, "loop": True},
    "  with torch.compile": {"train": {**SPARSE, "compile": True}},
    "  with bf16 autocast": {"train": {**SPARSE, "precision": "bf16"}},
    "DeepCTR-Torch step (same sizes)": {"deepctr": True},
}


def previous_forward(self, x):
    """GroupedMLP.forward before the speed work, kept here as the baseline."""
    import torch
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(self.groups, -1, -1)
    last = len(self.weights) - 1
    for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
        x = torch.baddbmm(b, x, w)
        if i < last or self.final_relu:
            x = torch.relu(x)
    return x


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


def watchnext_step(lever: dict[str, Any], encoder, threads: int) -> Callable[[int], None]:
    import torch

    from watchnext.model.layers import GroupedMLP
    from watchnext.model.ranker import MultitaskRanker
    from watchnext.train.optim import make_optimizer
    from watchnext.train.trainer import Trainer

    config = tt.workload_config(PEER, {**lever["train"], "threads": threads})
    torch.manual_seed(tt.SEED)
    model = MultitaskRanker(config, encoder, sparse=config.train.sparse_embeddings)
    patch = previous_forward if lever.get("previous") else loop_forward if lever.get("loop") else None
    if patch:
        for module in model.modules():
            if isinstance(module, GroupedMLP):
                module.forward = types.MethodType(patch, module)
    trainer = Trainer(config, encoder, model)
    if lever.get("torch_sparse_adam"):
        trainer.optimizer = make_optimizer(model, config, sparse=True)
    return lambda i: trainer.train_step(BATCHES[i])


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first")
    parser.add_argument("--threads", type=int, default=tt.THREADS)
    parser.add_argument("--only", nargs="*", help="levers whose name contains one of these")
    args = parser.parse_args()

    importlib.import_module("watchnext")  # before torch: its thread/allocator defaults apply
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
    steps = {name: deepctr_step(data) if lever.get("deepctr") else
             watchnext_step(lever, encoder, args.threads) for name, lever in levers.items()}
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
    base = statistics.median(next(iter(times.values())))
    print(f"| lever ({args.threads} threads, batch {tt.BATCH}, median of {args.steps} interleaved "
          f"steps) | ms / step | examples/s | vs first row | first step s |")
    print("|---|---|---|---|---|")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"| {name} | {med * 1000:,.0f} | {tt.BATCH / med:,.0f} | {base / med:.2f}x | "
              f"{first[name]:.1f} |")


if __name__ == "__main__":
    main()

"""Before/after for each training-speed lever, on the standard workload's shapes.

    .venv/bin/python benchmarks/speed_levers.py                 # all levers, 2 threads
    .venv/bin/python benchmarks/speed_levers.py --threads 1 --steps 10 --rounds 3

Each lever runs in a fresh subprocess that trains ``--steps`` minibatches of 4096 (after warm-up
steps) of the peer-architecture MMoE from benchmarks/train_throughput.py. Levers are run in
interleaved rounds (A B C A B C ...) so drift in a shared machine's load hits all of them alike;
the table gives the median over rounds of wall-clock examples/s and of process CPU ms per step
(CPU time is less sensitive than wall time to other processes on the same cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import train_throughput as tt

PEER = {"kind": "mmoe", "bottom_units": [], "gate_input": "input"}
LEVERS: dict[str, dict[str, Any]] = {
    "dense Adam (baseline)": {},
    "sparse rows + SparseAdam": {"train": {"sparse_embeddings": True}},
    "sparse + experts as a Python loop": {"train": {"sparse_embeddings": True}, "loop": True},
    "sparse + torch.compile": {"train": {"sparse_embeddings": True, "compile": True}},
    "sparse + bf16 autocast": {"train": {"sparse_embeddings": True, "precision": "bf16"}},
}


def loop_forward(self, x):  # the GroupedMLP forward as a loop over members (DeepCTR-style)
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


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import pyarrow as pa
    import torch

    from watchnext.data.batch import iterate
    from watchnext.data.encoder import FeatureEncoder
    from watchnext.model.layers import GroupedMLP
    from watchnext.model.ranker import MultitaskRanker
    from watchnext.train.trainer import Trainer

    if spec.get("loop"):
        GroupedMLP.forward = loop_forward
    train = {**spec.get("train", {}), "threads": spec["threads"]}
    config = tt.workload_config(PEER, train)
    steps, warmup = spec["steps"], spec["warmup"]
    data = tt.make_data(tt.BATCH * (steps + warmup))
    table = pa.table({**{f"c{i}": data["ids"][:, i] for i in range(tt.CATEGORICAL)},
                      **{f"d{i}": data["dense"][:, i] for i in range(tt.DENSE)},
                      **{f"y{i}": data["labels"][:, i] for i in range(tt.TASKS)}})
    encoder = FeatureEncoder(config).fit(table)
    torch.manual_seed(tt.SEED)
    # vocabularies as in the full workload (100,000 ids per table), whatever rows were sampled
    encoder.vocabularies = {k: _Sized(v, tt.IDS + 2) for k, v in encoder.vocabularies.items()}
    model = MultitaskRanker(config, encoder, sparse=config.train.sparse_embeddings)
    batch = encoder.transform(table)
    trainer = Trainer(config, encoder, model)
    batches = list(iterate(batch, tt.BATCH, True, torch.Generator().manual_seed(0)))
    start = time.perf_counter()
    for mb in batches[:warmup]:
        trainer.train_step(mb)
    warm_s = time.perf_counter() - start
    wall, cpu = time.perf_counter(), time.process_time()
    for mb in batches[warmup:]:
        trainer.train_step(mb)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"ex_s": steps * tt.BATCH / wall, "cpu_ms": cpu / steps * 1000, "warmup_s": warm_s}


class _Sized:
    """A fitted vocabulary reporting a fixed size, so tables have the workload's row count."""

    def __init__(self, vocab, size: int):
        self.vocab, self.size = vocab, size

    def __len__(self) -> int:
        return self.size

    def lookup(self, column):
        return self.vocab.lookup(column)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=tt.THREADS)
    parser.add_argument("--only", nargs="*", help="levers whose name contains one of these")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    levers = {k: v for k, v in LEVERS.items()
              if not args.only or any(s.lower() in k.lower() for s in args.only)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in levers}
    for _ in range(args.rounds):
        for name, lever in levers.items():
            spec = {**lever, "steps": args.steps, "warmup": args.warmup, "threads": args.threads}
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"{name}: {runs[name][-1]}", file=sys.stderr)
    print(f"| lever ({args.threads} threads, {args.steps} steps x {tt.BATCH}, median of "
          f"{args.rounds}) | train ex/s (wall) | CPU ms / step | warm-up s |")
    print("|---|---|---|---|")
    for name, results in runs.items():
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(f"| {name} | {med['ex_s']:,.0f} | {med['cpu_ms']:,.0f} | {med['warmup_s']:.1f} |")


if __name__ == "__main__":
    main()

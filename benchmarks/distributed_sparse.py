"""Dense vs sparse embedding gradients, 1 process vs 2 under torchrun (gloo, CPU).

    python benchmarks/distributed_sparse.py [--buckets 1048576] [--rows-per-day 200000]

One id feature is hashed into ``--buckets`` rows of 16 floats (64 MiB at 2^20), the size where
the choice matters: with dense gradients every step all-reduces and Adam-updates the whole table;
with ``train.sparse_embeddings`` only the rows in the batch travel and row-wise Adam touches only
them. Prints training examples/s (from metrics.json) per setting. Each process uses one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from streaming_memory import CONFIG, generate  # noqa: E402


def config(buckets: int, sparse: bool) -> dict:
    cfg = json.loads(json.dumps(CONFIG))
    cfg["features"][0].update(hash_buckets=buckets, embedding_dim=16)
    cfg["train"]["sparse_embeddings"] = sparse
    return cfg


def run(nproc: int, cfg: Path, data: Path, out: Path) -> dict:
    command = ["-m", "watchnext.train.commands", "train-stream", str(cfg), "--data", str(data),
               "--out", str(out), "--quiet"]
    if nproc > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
                   "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stdout + proc.stderr)
    days = json.loads((out / "metrics.json").read_text())["days"]
    rows = sum(d["rows_trained"] for d in days)
    return {"rows": rows, "examples_per_s": rows / sum(d["seconds"] for d in days)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buckets", type=int, default=1 << 20)
    parser.add_argument("--rows-per-day", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "data", 2, args.rows_per_day, files=2, row_group=65_536)
        print(f"| processes | gradients | examples/s |  (hashed table {args.buckets:,} x 16)")
        print("|---:|---|---:|")
        for nproc in (1, 2):
            for sparse in (False, True):
                cfg = root / f"config-{sparse}.json"
                cfg.write_text(json.dumps(config(args.buckets, sparse)))
                r = run(nproc, cfg, root / "data", root / f"run-{nproc}-{sparse}")
                print(f"| {nproc} | {'sparse' if sparse else 'dense'} | {r['examples_per_s']:,.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()

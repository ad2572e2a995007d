"""Where a one-off ``watchnext recommend`` spends its time: imports, model load, one list.

    python benchmarks/recommend_startup.py MODEL_DIR [--backend torch] [--runs 3]

1. The command itself, end to end, in fresh processes (wall time, median of ``--runs``).
2. One fresh process, phase by phase: ``import watchnext.cli`` (what the command imports before it
   runs), ``ServingModel.load`` (checksums, ranker, retrieval index, feature store, backend choice,
   smoke test), and one watch-next list. It also says whether loading imported the compiler
   stack (``torch._dynamo``), which a serving load does not need.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PHASES = """
import json, sys, time
start = time.perf_counter()
import watchnext.cli  # noqa: F401
imported = time.perf_counter()
from watchnext.serve.service import ServingModel
before = set(sys.modules)
model = ServingModel.load(sys.argv[1], backend=sys.argv[2])
loaded = time.perf_counter()
user = (model.store.examples["users"] or [{"user_id": None, "last_video": None}])[0]
model.watch_next(user["user_id"], user["last_video"], None, k=10)
done = time.perf_counter()
print(json.dumps({"import watchnext.cli": imported - start, "ServingModel.load": loaded - imported,
                  "one watch-next list": done - loaded, "total": done - start,
                  "load imported torch._dynamo": "torch._dynamo" in set(sys.modules) - before}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "auto"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [sys.executable, "-m", "watchnext.cli", "recommend", args.model_dir, "--k", "10",
               "--backend", args.backend]
    walls = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
    print(f"watchnext recommend {args.model_dir} --k 10 --backend {args.backend}: median "
          f"{statistics.median(walls):.2f} s wall over {args.runs} runs "
          f"({', '.join(f'{w:.2f}' for w in walls)})")
    phases = json.loads(subprocess.run([sys.executable, "-c", PHASES, args.model_dir, args.backend],
                                       env=env, check=True, capture_output=True,
                                       text=True).stdout)
    for name, value in phases.items():
        print(f"  {name:30s} {value:6.2f} s" if isinstance(value, float) else
              f"  {name:30s} {value}")


if __name__ == "__main__":
    main()

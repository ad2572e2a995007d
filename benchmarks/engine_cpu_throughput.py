"""One epoch of the standard workload in CPU seconds, for this checkout or one from before the
one-loop engine (issue 12), so the two can be compared on a busy machine.

    git worktree add /tmp/before 8804a17
    for r in 1 2 3; do for sparse in 1 0; do for tree in /tmp/before .; do
        PYTHONPATH=$tree/src .venv/bin/python benchmarks/engine_cpu_throughput.py $tree 100000 $sparse
    done; done; done

The workload and its process settings are ``train_throughput.py``'s (MMoE, peer architecture,
2 threads, batch 4096), imported from ``TREE/benchmarks``; ``sparse`` 1 = row-wise embedding
Adam, 0 = dense Adam. The timed window is building the model and its optimiser and training one
epoch: ``Trainer.train_epoch`` before the engine, ``watchnext.train.loop.train`` after it. Wall
seconds depend on what else runs on the machine; CPU seconds (all threads of the process) much
less, so read ``ex_per_cpu_s`` when the machine is shared.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import time


def main() -> None:
    tree, rows, sparse = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    sys.path.insert(0, f"{tree}/benchmarks")
    importlib.import_module("watchnext")  # its OpenMP default applies before torch loads
    import pyarrow as pa
    import torch
    import train_throughput as tt

    from watchnext.data.encoder import FeatureEncoder
    from watchnext.train.speed import apply_process_settings

    config = tt.workload_config(tt.PEER_MODEL, {"sparse_embeddings": True} if sparse else {})
    apply_process_settings(config.train)
    data = tt.make_data(rows)
    table = pa.table({**{f"c{i}": data["ids"][:, i] for i in range(tt.CATEGORICAL)},
                      **{f"d{i}": data["dense"][:, i] for i in range(tt.DENSE)},
                      **{f"y{i}": data["labels"][:, i] for i in range(tt.TASKS)}})
    encoder = FeatureEncoder(config).fit(table)
    batch = encoder.transform(table)
    del table, data
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        from watchnext.train import loop
        from watchnext.train.sources import TableSource
        engine = "loop"
        loop.train(config, TableSource([("workload", batch)], encoder),
                   options=loop.LoopOptions(epochs_per_day=1))
    except ImportError:  # a checkout from before the engine
        from watchnext.train.trainer import Trainer

        from watchnext.model.ranker import MultitaskRanker
        engine = "Trainer"
        torch.manual_seed(tt.SEED)
        model = MultitaskRanker(config, encoder, sparse=config.train.sparse_embeddings)
        Trainer(config, encoder, model).train_epoch(batch, 0, 0)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"tree": tree, "engine": engine, "sparse": sparse, "rows": rows,
                      "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                      "ex_per_s": round(rows / wall), "ex_per_cpu_s": round(rows / cpu)}))


if __name__ == "__main__":
    main()

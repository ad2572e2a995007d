"""What moved the served ranker's pairwise in the pool on kuairand-sample v1's test days.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pairwise_attribution.py MODEL_DIR

For a model directory built by ``watchnext build-service src/watchnext/configs/kuairand_v1.toml``,
``evaluate_retrieval`` on the test days' clicks, ranked by the model directory's ranker, in four
combinations of

  * the feature store: as built (history served as of the day after the logs) or rebuilt the old
    way (each key's last logged row: its last day missing, the train/serve skew fixed in
    ``watchnext.serve.features``);
  * the pool: as built, or the old default (quotas cowatch .4 / embedding .45 / popular .15,
    popular with 25% of videos first watched in the last 2 days, watched videos kept).

Prints pool recall, end-to-end recall@10 and the two pairwise figures for each.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from unittest import mock

import pyarrow as pa
import torch

from watchnext.retrieve import CandidatePool, CoWatch, EmbeddingRetrieval, PopularFresh
from watchnext.retrieve.evaluate import evaluate_retrieval
from watchnext.retrieve.log import LogColumns
from watchnext.serve.features import FeatureStore
from watchnext.serve.recall import serving_scorer, split_logs
from watchnext.serve.service import ServingModel


def old_pool(history: pa.Table, columns: LogColumns) -> CandidatePool:
    sources = {"cowatch": CoWatch(columns), "embedding": EmbeddingRetrieval(columns),
               "popular": PopularFresh(columns, fresh_share=0.25, fresh_days=2.0)}
    return CandidatePool(sources, 300, {"cowatch": 120, "embedding": 135, "popular": 45}
                         ).fit(history, columns)


def pct(row: dict, key: str) -> str:
    v = row[key]
    return f"{100 * v['value']:.2f}% [{100 * v['low']:.2f}, {100 * v['high']:.2f}] (n {v['n']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = ServingModel.load(args.model_dir, backend="torch")
    history, evaluation = split_logs(model.config, None)
    columns = LogColumns(**model.manifest["columns"])
    with mock.patch("watchnext.serve.features.history_as_of_end", lambda table, _config: table):
        stale = FeatureStore.build(history, model.store.encoder, columns)
    stores = {"store as built": model.store, "store with last-row history": stale}
    pools = {"pool as built": model.pool, "old default pool": old_pool(history, columns)}
    for store_name, store in stores.items():
        scorer = serving_scorer(_with_store(model, store))
        for pool_name, pool in pools.items():
            started = time.perf_counter()
            row = evaluate_retrieval(pool, history, evaluation, ["is_click"], columns,
                                     scorer=scorer)["labels"]["is_click"]["rows"]["pool"]
            print(f"{store_name}, {pool_name}: recall@300 {pct(row, 'recall')}, recall@10 ranked "
                  f"{pct(row, 'recall_at_10')}, pairwise {pct(row, 'pairwise')}, pairwise vs "
                  f"shown {pct(row, 'pairwise_exposed')} ({time.perf_counter() - started:.0f} s)",
                  flush=True)


def _with_store(model: ServingModel, store: FeatureStore) -> ServingModel:
    """A shallow copy of ``model`` that encodes with ``store``."""
    other = copy.copy(model)
    other.store = store
    return other


if __name__ == "__main__":
    main()

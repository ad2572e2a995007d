"""Train/serve parity on kuairand-sample v1's validation day, feature by feature.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serving_parity.py [--last-row]

The feature store is built from the training days (2022-04-08..17) with the encoder of the
bundled config; for every row of the validation day (2022-04-18) whose user and video the store
knows, the encoded features it serves (``FeatureStore.encode`` at the row's time) are compared
with the row's training features (``FeatureEncoder.transform``). Prints the share of rows that
differ per feature, and how many differing pair-feature rows have a (user, length class) pair the
store never saw. ``--last-row`` builds the store the way it was built before issue 15 (each
key's last logged row, its history missing that row's own day), to show the skew it had.
``tests/serve/test_train_serve_parity.py`` asserts the same on a smaller slice.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from watchnext.config import load_config
from watchnext.data.datasets import load_dataset
from watchnext.data.encoder import FeatureEncoder
from watchnext.retrieve.log import LogColumns, times_in_seconds
from watchnext.serve.features import FeatureStore

CONFIG = Path(__file__).resolve().parents[1] / "src/watchnext/configs/kuairand_v1.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--last-row", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(CONFIG)
    splits = load_dataset("kuairand-sample-v1")  # history features over all days, point in time
    fit, day = splits["train"], splits["valid"]
    encoder = FeatureEncoder(config).fit(fit)
    if args.last_row:
        with mock.patch("watchnext.serve.features.history_as_of_end", lambda t, _c: t):
            store = FeatureStore.build(fit, encoder, LogColumns(watched="is_click"))
    else:
        store = FeatureStore.build(fit, encoder, LogColumns(watched="is_click"))
    trained = encoder.transform(day)
    times = times_in_seconds(day["time_ms"], "time_ms")
    names = [f.name for f in encoder.categorical] + [f.name for f in encoder.numeric]
    pair = store.pairs.get("user_length")
    differ = np.zeros(len(names))
    compared = unseen_pairs = 0
    for i, (user, video) in enumerate(zip(pc.cast(day["user_id"], pa.string()).to_pylist(),
                                          pc.cast(day["video_id"], pa.string()).to_pylist(),
                                          strict=True)):
        if not (store.knows_user(user) and store.knows_item(video)):
            continue
        served = store.encode(user, [video], None, dt.datetime.fromtimestamp(times[i], dt.UTC))
        row = np.r_[served.categorical[0], served.dense[0]]
        logged = np.r_[trained.categorical[i].numpy(), trained.dense[i].numpy()]
        differ += ~np.isclose(row, logged, rtol=1e-6, atol=1e-6)
        compared += 1
        unseen_pairs += pair is not None and pair.row(user, video) is None
    print(f"{compared:,} rows of {day.num_rows:,} with a known user and video; "
          f"{unseen_pairs} of them with an unseen (user, length class) pair")
    for name, count in zip(names, differ, strict=True):
        if count:
            print(f"{name}: differs on {count / compared:.1%} of rows")
    same = [n for n, c in zip(names, differ, strict=True) if not c]
    print(f"identical on every row: {len(same)} of {len(names)} features")


if __name__ == "__main__":
    main()

"""The Python API over streamed training: ``Ranker.fit_stream`` holds the model it trained."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from tests.streamdata import stream_config, write_days
from watchnext.api import Ranker


def test_fit_stream_trains_and_predicts_like_the_saved_model(tmp_path):
    paths = write_days(tmp_path / "data", days=2, files_per_day=1, rows_per_file=256)
    ranker = Ranker(stream_config(batch_size=32)).fit_stream(
        tmp_path / "data", tmp_path / "run", checkpoint_every=5, shuffle_buffer=64)
    assert ranker.metrics["global_step"] == 16
    assert [d["rows_trained"] for d in ranker.metrics["days"]] == [256, 256]
    table = pq.read_table(paths[0])
    predictions = ranker.predict(table)
    assert predictions.shape == (256, 2) and np.all((predictions > 0) & (predictions < 1))
    np.testing.assert_array_equal(predictions, Ranker.load(tmp_path / "run").predict(table))

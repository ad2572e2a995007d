import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from watchnext.data.encoder import FeatureEncoder
from watchnext.data.errors import DataError
from watchnext.data.expressions import ExpressionError, evaluate
from watchnext.data.io import read_tables
from watchnext.data.vocab import MISSING, OOV


def _encoder(config, table):
    return FeatureEncoder(config).fit(table)


def _with(table: pa.Table, column: str, values) -> pa.Table:
    return table.set_column(table.column_names.index(column), column, pa.array(values))


def test_unseen_id_maps_to_oov_bucket_and_null_to_missing(config, impressions):
    enc = _encoder(config, impressions)
    probe = impressions.slice(0, 3)
    probe = _with(probe, "video_id", ["never-seen", None, impressions["video_id"][0].as_py()])
    ids = enc.transform(probe).categorical[:, 1].tolist()
    assert ids[0] == OOV and ids[1] == MISSING and ids[2] >= 2


def test_min_count_sends_rare_ids_to_oov(config, impressions):
    cfg = config.replace(features=[{**config.to_dict()["features"][1], "min_count": 10_000},
                                   *config.to_dict()["features"][2:]])
    batch = FeatureEncoder(cfg).fit(impressions).transform(impressions)
    assert (batch.categorical[:, 0] == OOV).all()


def test_batch_shapes_and_labels(config, impressions):
    batch = _encoder(config, impressions).transform(impressions)
    n = impressions.num_rows
    assert batch.categorical.shape == (n, 3)
    assert batch.multi.shape == (n, 1, 4) and (batch.multi[:, 0, :2] >= 2).all()
    assert batch.dense.shape == (n, 1) and abs(float(batch.dense.mean())) < 0.05
    assert batch.labels.shape == (n, 3)
    np.testing.assert_allclose(batch.labels[:, 1].numpy(),
                               np.log1p(impressions["watch_ms"].to_numpy() / 1000), rtol=1e-5)


def test_missing_column_names_file_and_column(config, impressions, tmp_path):
    path = tmp_path / "day1.parquet"
    pq.write_table(impressions.drop(["is_like"]), path)
    with pytest.raises(DataError, match=r"day1.parquet.*'is_like'.*missing"):
        _encoder(config, read_tables(path))


def test_binary_label_out_of_range_names_file_column_row(config, impressions, tmp_path):
    labels = impressions["is_click"].to_numpy().copy()
    labels[17] = 2
    path = tmp_path / "bad.csv"
    pacsv.write_csv(_with(impressions, "is_click", labels), path)
    with pytest.raises(DataError, match=r"bad.csv, column 'is_click', row 17: .*expected 0 or 1"):
        _encoder(config, read_tables(path))


def test_nan_numeric_feature_names_the_row(config, impressions):
    values = impressions["duration_ms"].to_numpy().astype(float)
    values[5] = np.nan
    with pytest.raises(DataError, match=r"column 'duration_ms', row 5: value is null"):
        _encoder(config, _with(impressions, "duration_ms", values))


def test_negative_value_under_log1p_is_refused(config, impressions):
    values = impressions["watch_ms"].to_numpy().copy()
    values[3] = -5000.0
    with pytest.raises(DataError, match=r"'watch_ms', row 3: label for task 'watch'"):
        _encoder(config, _with(impressions, "watch_ms", values))


def test_wrong_type_is_refused(config, impressions):
    with pytest.raises(DataError, match=r"'duration_ms'.*expected a numeric column"):
        _encoder(config, _with(impressions, "duration_ms", ["long"] * impressions.num_rows))


def test_bad_position_names_the_row(config, impressions):
    positions = impressions["position"].to_numpy().copy()
    positions[9] = 0
    with pytest.raises(DataError, match=r"'position', row 9: position 0 is not an integer >= 1"):
        _encoder(config, _with(impressions, "position", positions))


def test_null_labels_are_kept_as_nan_not_dropped(config, impressions):
    likes = impressions["is_like"].to_pylist()
    likes[4] = None
    batch = _encoder(config, impressions).transform(_with(impressions, "is_like", likes))
    assert len(batch) == impressions.num_rows and np.isnan(batch.labels[4, 2].item())


def test_positions_are_clipped_to_max_position(config, impressions):
    batch = _encoder(config, impressions).transform(
        _with(impressions, "position", [99] * impressions.num_rows))
    assert (batch.position == config.bias.max_position).all()


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="corrupt.parquet: cannot read table"):
        read_tables(path)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_tables(tmp_path / "nope.parquet")


def test_encoder_state_round_trip(config, impressions):
    enc = _encoder(config, impressions)
    again = FeatureEncoder.from_state(config, enc.state_dict())
    a, b = enc.transform(impressions), again.transform(impressions)
    assert (a.categorical == b.categorical).all() and (a.dense == b.dense).all()


@pytest.mark.parametrize("expression", ["__import__('os')", "x.real", "open('f')", "'a' + x"])
def test_expressions_refuse_anything_but_arithmetic(expression):
    with pytest.raises(ExpressionError):
        evaluate(expression, lambda _c: np.zeros(2))


def test_expression_arithmetic():
    cols = {"a": np.array([1.0, 3.0]), "b": np.array([0.0, 999.0])}
    np.testing.assert_allclose(evaluate("log1p(b / 1000) + (a > 2)", cols.__getitem__),
                               [0.0, np.log1p(0.999) + 1])

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


def _with_features(config, *features):
    return config.replace(features=[*config.to_dict()["features"], *features])


def test_a_cross_is_one_id_per_combination(config, impressions):
    cfg = _with_features(config, {"name": "user_video", "kind": "categorical",
                                  "cross": ["user_id", "video_id"]})
    enc = FeatureEncoder(cfg).fit(impressions)
    pairs = set(zip(impressions["user_id"].to_pylist(), impressions["video_id"].to_pylist(),
                    strict=True))
    assert enc.vocab_size("user_video") == len(pairs) + 2  # + missing and OOV
    ids = enc.transform(impressions).categorical[:, -1].numpy()
    keys = list(zip(impressions["user_id"].to_pylist(), impressions["video_id"].to_pylist(),
                    strict=True))
    first = {}
    for key, i in zip(keys, ids.tolist(), strict=True):
        assert first.setdefault(key, i) == i
    assert len(set(first.values())) == len(pairs)
    probe = _with(impressions.slice(0, 2), "video_id", [None, "never-seen"])
    assert enc.transform(probe).categorical[:, -1].tolist() == [MISSING, OOV]


def test_a_hashed_cross_and_a_categorical_expression(config, impressions):
    cfg = _with_features(config,
                         {"name": "user_video", "kind": "categorical",
                          "cross": ["user_id", "video_id"], "hash_buckets": 32},
                         {"name": "daypart", "kind": "categorical", "expression": "hour // 6"})
    with pytest.raises(ExpressionError):  # floor division is outside the grammar
        FeatureEncoder(cfg).fit(impressions)
    cfg = _with_features(config,
                         {"name": "user_video", "kind": "categorical",
                          "cross": ["user_id", "video_id"], "hash_buckets": 32},
                         {"name": "daypart", "kind": "categorical",
                          "expression": "(hour - hour % 6) / 6"})
    enc = FeatureEncoder(cfg).fit(impressions)
    assert enc.vocab_size("user_video") == 34 and enc.vocab_size("daypart") == 4 + 2
    batch = enc.transform(impressions)
    daypart = enc.vocabularies["daypart"].values
    expected = [daypart.index(str(h // 6)) + 2 for h in impressions["hour"].to_pylist()]
    assert batch.categorical[:, -1].tolist() == expected
    assert ((batch.categorical[:, -2] >= 2) & (batch.categorical[:, -2] < 34)).all()


def test_a_missing_cross_column_is_named(config, impressions):
    cfg = _with_features(config, {"name": "q_item", "kind": "categorical",
                                  "cross": ["query_id", "video_id"]})
    with pytest.raises(DataError, match=r"column 'query_id': required column is missing"):
        FeatureEncoder(cfg).fit(impressions)


def test_a_cross_trains_end_to_end_and_survives_a_checkpoint(config, impressions, tmp_path):
    from watchnext.api import Ranker

    cfg = _with_features(config, {"name": "user_video", "kind": "categorical",
                                  "cross": ["user_id", "video_id"], "embedding_dim": 4})
    cfg = cfg.replace(train={"max_epochs": 1})
    train, valid = impressions.slice(0, 2400), impressions.slice(2400)
    ranker = Ranker(cfg).fit(train, valid)
    report = ranker.evaluate(valid)
    restored = Ranker.load(ranker.save(tmp_path / "model"))
    assert restored.config.features[-1].cross == ("user_id", "video_id")
    assert restored.evaluate(valid) == report


def test_a_log_without_user_and_device_columns_trains_with_defaults(config, impressions):
    """``data.user_column`` (default user_id) and ``bias.device`` are used where present."""
    from watchnext.api import Ranker

    assert config.data.user_column == "user_id" and config.bias.device == "device"
    features = [f for f in config.to_dict()["features"] if f["name"] != "user_id"]
    cfg = config.replace(features=features)
    bare = impressions.drop(["user_id", "device"])
    enc = FeatureEncoder(cfg).fit(bare)
    assert enc.num_devices == 1
    batch = enc.transform(bare)
    assert (batch.device == 0).all() and (batch.users == -1).all()
    report = Ranker(cfg).fit(bare.slice(0, 2400), bare.slice(2400)).evaluate(bare.slice(2400))
    assert report["rows"] == 600 and "gauc" not in report["tasks"]["click"]  # no users: no GAUC
    assert report["tasks"]["like"]["auc"] > 0.52  # likes follow the video (0.56 measured)


def test_a_model_with_devices_scores_a_log_without_them_as_missing(config, impressions):
    enc = FeatureEncoder(config).fit(impressions)
    assert enc.num_devices == len(set(impressions["device"].to_pylist())) + 2
    assert (enc.transform(impressions.drop(["device"])).device == MISSING).all()


def test_asinh_squashes_the_standardised_value_with_the_same_statistics(config, impressions):
    """``log1p_standardize_asinh`` is asinh of ``log1p_standardize``: the mean and standard
    deviation are those of the unsquashed values, so only the tails change."""
    features = config.to_dict()["features"]
    squashed = config.replace(features=[*features[:-1], {**features[-1],
                                                          "transform": "log1p_standardize_asinh"}])
    plain_enc, squash_enc = _encoder(config, impressions), _encoder(squashed, impressions)
    assert plain_enc.numeric_stats == squash_enc.numeric_stats
    plain = plain_enc.transform(impressions).dense[:, 0].numpy()
    squash = squash_enc.transform(impressions).dense[:, 0].numpy()
    np.testing.assert_allclose(squash, np.arcsinh(plain), rtol=1e-5, atol=1e-6)
    assert np.abs(squash).max() < np.abs(plain).max()

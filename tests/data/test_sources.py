"""The run's data from its one source: days by value or range, held-out requests, history."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import make_impressions, small_config_dict
from watchnext.config import ConfigError, config_from_dict
from watchnext.data.errors import DataError
from watchnext.data.sources import day_values, load_splits


def _log(tmp_path, day_type: str = "iso") -> str:
    """Six days of impressions in one file; the day column as ISO text, YYYYMMDD or a date."""
    table = make_impressions(1200)
    days = np.arange(1200) * 6 // 1200  # 0..5
    dates = [datetime.date(2024, 3, 1) + datetime.timedelta(days=int(d)) for d in days]
    column = {"iso": pa.array([d.isoformat() for d in dates]),
              "int": pa.array([int(d.strftime("%Y%m%d")) for d in dates]),
              "date": pa.array(dates, pa.date32())}[day_type]
    table = table.set_column(table.schema.get_field_index("day"), "day", column)
    path = tmp_path / f"log-{day_type}.parquet"
    pq.write_table(table, path)
    return str(path)


def _config(**data):
    raw = small_config_dict()
    raw["data"].update(data)
    return config_from_dict(raw)


@pytest.mark.parametrize("day_type", ["iso", "int", "date"])
def test_days_by_range_and_list_split_a_log(tmp_path, day_type):
    cfg = _config(path=_log(tmp_path, day_type), valid_days="2024-03-05",
                  test_days=["2024-03-06"], train_days="2024-03-01..2024-03-04")
    splits = load_splits(cfg)
    rows = {k: v.num_rows for k, v in splits.items()}
    assert rows == {"train": 800, "valid": 200, "test": 200}
    days = day_values(splits["train"], "day", datetime.date)
    assert {datetime.date.fromordinal(int(d)).day for d in np.unique(days)} == {1, 2, 3, 4}


def test_training_takes_the_days_the_other_splits_leave(tmp_path):
    cfg = _config(path=_log(tmp_path), valid_days="2024-03-03", test_days="2024-03-05..2024-03-06")
    splits = load_splits(cfg)
    assert {k: v.num_rows for k, v in splits.items()} == {"train": 600, "valid": 200, "test": 400}
    assert "2024-03-03" not in set(splits["train"]["day"].to_pylist())


def test_day_numbers_select_integer_day_columns(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(make_impressions(900), path)  # day = 1, 2, 3
    splits = load_splits(_config(path=str(path), train_days="1..2", valid_days=[3]))
    assert set(splits["valid"]["day"].to_pylist()) == {3}
    assert set(splits["train"]["day"].to_pylist()) == {1, 2}


def test_a_day_range_that_selects_nothing_is_named(tmp_path):
    cfg = _config(path=_log(tmp_path), valid_days="2024-04-01")
    with pytest.raises(DataError, match=r"data.valid_days selects no rows .*2024-03-01 to 2024-03-06"):
        load_splits(cfg)


def test_a_day_that_is_not_a_date_names_file_and_row(tmp_path):
    table = make_impressions(30)
    table = table.set_column(table.schema.get_field_index("day"), "day",
                             pa.array(["2024-03-01"] * 29 + ["yesterday"]))
    pq.write_table(table, tmp_path / "log.parquet")
    with pytest.raises(DataError, match=r"log.parquet, column 'day', row 29: day 'yesterday'"):
        load_splits(_config(path=str(tmp_path / "log.parquet"), valid_days="2024-03-01"))


def test_valid_fraction_holds_out_whole_requests(tmp_path):
    cfg = _config(path=_log(tmp_path), valid_fraction=0.2)
    splits = load_splits(cfg)
    train, valid = splits["train"], splits["valid"]
    assert train.num_rows + valid.num_rows == 1200
    assert 0.1 < valid.num_rows / 1200 < 0.3
    assert not set(train["request_id"].to_pylist()) & set(valid["request_id"].to_pylist())
    again = load_splits(cfg)["valid"]
    assert again["request_id"].to_pylist() == valid["request_id"].to_pylist()


def test_valid_fraction_needs_a_source_without_validation(tmp_path):
    paths = {s: tmp_path / f"{s}.parquet" for s in ("train", "valid")}
    for seed, path in enumerate(paths.values()):
        pq.write_table(make_impressions(200, seed=seed), path)
    cfg = _config(train=str(paths["train"]), valid=str(paths["valid"]))
    assert set(load_splits(cfg)) == {"train", "valid"}
    with pytest.raises(ConfigError, match="data.valid_fraction"):
        load_splits(cfg.replace(data={"valid": [], "valid_fraction": 0.1,
                                      "dataset": "open-bandit-small", "train": [],
                                      "request_column": "timestamp"}))


def test_no_source_is_a_config_error():
    with pytest.raises(ConfigError, match="data: no data source"):
        load_splits(_config())


def test_history_blocks_are_computed_for_a_path_source(tmp_path):
    raw = small_config_dict()
    raw["data"].update(path=_log(tmp_path), test_days="2024-03-06")
    raw["history"] = [{"entity": "video_id", "labels": ["is_click", "watch"]}]
    raw["history_labels"] = {"watch": "log1p(watch_ms / 1000)"}
    splits = load_splits(config_from_dict(raw))
    test = splits["test"]
    assert {"video_id_hist_n", "video_id_hist_is_click", "video_id_hist_watch"} <= set(
        test.column_names)
    first_day = pc.equal(splits["train"]["day"], "2024-03-01")
    assert pc.all(pc.equal(splits["train"].filter(first_day)["video_id_hist_n"], 0.0)).as_py()
    assert pc.min(test["video_id_hist_n"]).as_py() > 0  # the test day sees the five before it


def test_a_bad_history_label_expression_names_its_key(tmp_path):
    raw = small_config_dict()
    raw["data"].update(path=_log(tmp_path))
    raw["history"] = [{"entity": "video_id", "labels": ["watch"]}]
    raw["history_labels"] = {"watch": "watch_ms ** "}
    with pytest.raises(ConfigError, match="history_labels.watch: cannot parse"):
        load_splits(config_from_dict(raw))


def test_train_and_build_service_read_the_same_data(tmp_path):
    """``build-service`` without ``--train`` used to prefer data.train over data.dataset."""
    from watchnext.serve.data import training_tables

    cfg = _config(path=_log(tmp_path), valid_days="2024-03-06")
    splits = load_splits(cfg)
    train, valid = training_tables(cfg)
    assert train.equals(splits["train"]) and valid.equals(splits["valid"])

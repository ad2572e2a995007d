"""Reading a log for the audit: the columns it needs, and errors that name file, column and row."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from watchnext.config import config_from_dict
from watchnext.data.errors import DataError
from watchnext.data.io import read_tables
from watchnext.evaluate.bias_audit import AuditColumns, columns_from_config, read_log

COLUMNS = AuditColumns(device="device", request="request_id", randomised="policy=random")


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({
        "request_id": [1, 1, 2, 2, 3, 3], "item_id": ["a", "b", "b", "a", "a", "c"],
        "device": ["phone", "phone", None, None, "tv", "tv"], "position": [1, 2, 1, 2, 1, 2],
        "click": [1, 0, 0, 1, 0, 0], "query": ["q", "q", "q", "r", "q", "q"],
        "policy": ["random", "random", "popularity", "popularity", "random", "random"],
        "explored": [1, 1, 0, 0, 0, 0]}), path)
    return path


def _read(path, **columns):
    return read_log(read_tables([str(path)]), AuditColumns(**{**COLUMNS.__dict__, **columns}))


def test_encodes_every_column(log_file):
    log = _read(log_file)
    assert log.click.tolist() == [1, 0, 0, 1, 0, 0]
    assert [log.device_names[d] for d in log.device] == ["phone", "phone", "(null)", "(null)",
                                                         "tv", "tv"]
    assert log.item.tolist()[:2] != log.item.tolist()[1:3] and log.item[0] == log.item[3]
    assert log.randomised.tolist() == [True, True, False, False, True, True]
    assert log.source == str(log_file)


def test_query_makes_the_item_key_a_pair(log_file):
    log = _read(log_file, query="query")
    assert log.item[0] != log.item[3] and log.item[0] == log.item[4]  # (q, a) vs (r, a)


def test_randomised_traffic_by_flag_all_or_policy_column(log_file):
    assert _read(log_file, randomised="explored").randomised.sum() == 2
    assert _read(log_file, randomised="all").randomised.all()
    assert _read(log_file, randomised="").randomised.sum() == 4  # policy=random by default
    table = read_tables([str(log_file)]).drop(["policy"])
    assert not read_log(table, AuditColumns(randomised="")).randomised.any()  # none marked


@pytest.mark.parametrize("columns, column, message", [
    ({"click": "clicked"}, "clicked", "required column is missing"),
    ({"position": "slot"}, "slot", "required column is missing"),
    ({"item": "video_id"}, "video_id", "required column is missing"),
    ({"randomised": "policy=uniform"}, "policy", "nothing randomised"),
    ({"randomised": "exploration"}, "exploration", "required column is missing"),
    ({"click": "item_id"}, "item_id", "expected a numeric column"),
    ({"click": "position"}, "position", "click must be 0 or 1"),
])
def test_bad_columns_name_the_file_and_column(log_file, columns, column, message):
    with pytest.raises(DataError, match=message) as error:
        _read(log_file, **columns)
    assert error.value.file == str(log_file) and error.value.column == column


def test_bad_values_name_the_row(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b", "c"], "position": [1, 0, 2],
                             "click": [0, 1, 0]}), path)
    with pytest.raises(DataError, match="integer >= 1") as error:
        read_log(read_tables([str(path)]), AuditColumns())
    assert (error.value.column, error.value.row) == ("position", 1)
    pq.write_table(pa.table({"item_id": ["a", "b", "c"], "position": [1, 1, 2],
                             "click": [0, 1, None]}), path)
    with pytest.raises(DataError, match="null") as error:
        read_log(read_tables([str(path)]), AuditColumns())
    assert (error.value.column, error.value.row) == ("click", 2)
    pq.write_table(pa.table({"item_id": ["a", None, "c"], "position": [1, 1, 2],
                             "click": [0, 1, 0]}), path)
    with pytest.raises(DataError, match="id is null") as error:
        read_log(read_tables([str(path)]), AuditColumns())
    assert (error.value.column, error.value.row) == ("item_id", 1)


def test_columns_come_from_the_run_config_then_the_flags():
    from tests.conftest import small_config_dict

    config = config_from_dict(small_config_dict())
    columns = columns_from_config(config, item="video_id", device=None)
    assert (columns.click, columns.position, columns.device, columns.request, columns.item) == (
        "is_click", "position", "device", "request_id", "video_id")
    assert columns_from_config(None) == AuditColumns()

"""Bad data at scale: each case stops a streamed run with a message naming file (and row) before
anything is written, or with skip_bad_rows is skipped and counted in the log and metrics.json."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from tests.streamdata import stream_config, write_days
from watchnext.data.errors import DataError
from watchnext.data.partitions import discover_days
from watchnext.data.scan import merge, scan
from watchnext.data.streaming import StreamLayout
from watchnext.train.commands import register
from watchnext.train.loop import LoopOptions
from watchnext.train.streaming import train_stream

ROWS = 300  # per file; two files, row groups of 100


def _rewrite(path, column, values):
    table = pq.read_table(path)
    array = pa.array(values)
    if column in table.column_names:
        table = table.set_column(table.schema.get_field_index(column), column, array)
    pq.write_table(table, path, row_group_size=100, write_page_checksum=True)


def _set_row(path, column, row, value):
    values = pq.read_table(path)[column].to_pylist()
    values[row] = value
    _rewrite(path, column, values)


def garbage(path):
    path.write_bytes(b"PAR1 this is not parquet at all PAR1")


def truncated(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_page(path):
    column = pq.ParquetFile(path).metadata.row_group(2).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[start + column.total_compressed_size - 5] ^= 0xFF
    path.write_bytes(bytes(data))


def missing_column(path):
    pq.write_table(pq.read_table(path).drop_columns(["is_like"]), path)


def wrong_type(path):
    _rewrite(path, "is_click", [str(v) for v in pq.read_table(path)["is_click"].to_pylist()])


def id_type_changes(path):
    _rewrite(path, "video_id", pc.cast(pc.utf8_slice_codeunits(
        pq.read_table(path)["video_id"], 1), pa.int64()))


CASES = {
    "garbage": (garbage, r"part-1\.parquet: not a readable Parquet file", "corrupt_file", None),
    "truncated": (truncated, r"part-1\.parquet: not a readable Parquet file", "corrupt_file", None),
    "corrupt page": (corrupt_page, r"part-1\.parquet, row 200: row group 2 \(rows 200-299\) cannot "
                     r"be read: .*CRC checksum verification failed", "unreadable_row_group", 100),
    "missing column": (missing_column, r"part-1\.parquet, column 'is_like': required column is "
                       r"missing \(have: .*\)", "missing_column", ROWS),
    "wrong type": (wrong_type, r"part-1\.parquet, column 'is_click': wrong type: expected a numeric "
                   r"column, found string", "wrong_type", ROWS),
    "id type changes": (id_type_changes, r"part-1\.parquet, column 'video_id': wrong type: is int64 "
                        r"here but string in .*part-0\.parquet", "wrong_type", ROWS),
    "label out of range": (lambda p: _set_row(p, "is_like", 17, 2),
                           r"part-1\.parquet, column 'is_like', row 17: label for task 'like' is 2, "
                           r"expected 0 or 1", "label_out_of_range", 1),
    "infinite feature": (lambda p: _set_row(p, "duration_ms", 17, float("inf")),
                         r"part-1\.parquet, column 'duration_ms', row 17: value is inf, expected a "
                         r"non-negative number for log1p \(feature 'length'\)", "bad_numeric", 1),
    "negative feature": (lambda p: _set_row(p, "duration_ms", 17, -5000.0),
                         r"column 'duration_ms', row 17: value is -5, expected a non-negative "
                         r"number for log1p", "bad_numeric", 1),
    "null feature": (lambda p: _set_row(p, "duration_ms", 17, None),
                     r"column 'duration_ms', row 17: value is null", "bad_numeric", 1),
    "position 0": (lambda p: _set_row(p, "position", 17, 0),
                   r"part-1\.parquet, column 'position', row 17: position 0 is not an integer >= 1",
                   "bad_position", 1),
}


@pytest.fixture
def data(tmp_path):
    write_days(tmp_path / "data", days=1, files_per_day=2, rows_per_file=ROWS, row_group_size=100)
    return tmp_path / "data"


def _bad_file(data):
    return data / "day=2024-03-01" / "part-1.parquet"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_stops_the_run_naming_file_and_row_and_writes_nothing(tmp_path, data, case):
    corrupt, message, _, _ = CASES[case]
    corrupt(_bad_file(data))
    with pytest.raises(DataError, match=message):
        train_stream(stream_config(), data, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", list(CASES))
def test_skip_bad_rows_skips_and_counts_them(tmp_path, data, case):
    corrupt, _, reason, rows = CASES[case]
    corrupt(_bad_file(data))
    lines = []
    result = train_stream(stream_config(), data, tmp_path / "run",
                          LoopOptions(skip_bad_rows=True), log=lines.append)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics == result.metrics
    skipped = metrics["skipped"]
    day = metrics["days"][0]
    if rows is None:  # no footer: the file's rows are unknown, the file itself is reported
        assert [(f["path"], f["reason"], f["rows"]) for f in skipped["files"]] == \
            [(str(_bad_file(data)), reason, None)]
        assert day["rows_trained"] == ROWS and day["rows_skipped"] == {}
        assert any(re.search(r"skipping file .*part-1\.parquet \(corrupt_file\)", line) for line in lines)
        return
    assert skipped["rows_found"] == {reason: rows} and skipped["rows_found_total"] == rows
    assert day["rows_skipped"] == {reason: rows}
    assert day["rows_trained"] == 2 * ROWS - rows
    assert any(f"{rows:,} {reason}" in line or f"({reason})" in line for line in lines)
    assert any(re.search(rf"{rows:,} skipped", line) for line in lines)


def test_the_earliest_bad_row_is_reported_whichever_shard_finds_it(tmp_path, data):
    for path, row in ((data / "day=2024-03-01" / "part-0.parquet", 250), (_bad_file(data), 10)):
        _set_row(path, "is_click", row, 5)
    cfg = stream_config()
    days, _ = discover_days(data, cfg)
    layout = StreamLayout.build(64, 2, shuffle_buffer=100)
    found = merge([scan(cfg, days, layout, [shard], skip_bad=False) for shard in (1, 0)])
    with pytest.raises(DataError, match=r"part-0\.parquet, column 'is_click', row 250: .* is 5"):
        found.raise_error()


def test_null_and_nan_labels_are_absent_not_bad(tmp_path, data):
    _set_row(_bad_file(data), "is_like", 3, None)
    _set_row(_bad_file(data), "is_click", 4, float("nan"))
    result = train_stream(stream_config(), data, tmp_path / "run")
    assert result.metrics["days"][0]["rows_trained"] == 2 * ROWS
    assert result.metrics["skipped"]["rows_found_total"] == 0


def test_cli_reports_bad_data_with_exit_code_2(tmp_path, data):
    _set_row(_bad_file(data), "is_click", 40, 7)
    config = tmp_path / "config.toml"
    config.write_text(_toml())
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    runner = CliRunner()
    out = runner.invoke(app, ["train-stream", str(config), "--data", str(data), "--out",
                              str(tmp_path / "run")])
    assert out.exit_code == 2
    assert re.search(r"error: .*part-1\.parquet, column 'is_click', row 40: label for task 'click' "
                     r"is 7, expected 0 or 1", out.output.replace("\n", ""))
    assert not (tmp_path / "run").exists()
    ok = runner.invoke(app, ["train-stream", str(config), "--data", str(data), "--out",
                             str(tmp_path / "run"), "--skip-bad-rows", "--checkpoint-every", "3"])
    assert ok.exit_code == 0, ok.output
    assert "skipping 1 bad rows: 1 label_out_of_range" in ok.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["skipped"]["rows_found"] == \
        {"label_out_of_range": 1}


def _toml() -> str:
    return """
name = "cli"
[[features]]
name = "video_id"
kind = "categorical"
embedding_dim = 4
[[tasks]]
name = "click"
type = "binary"
label = "is_click"
group = "engagement"
[model]
bottom_units = [8]
num_experts = 2
expert_units = [4]
[train]
batch_size = 64
progress = false
"""


def test_a_day_left_without_readable_files_is_recorded_and_training_goes_on(tmp_path):
    write_days(tmp_path / "data", days=3, files_per_day=1, rows_per_file=ROWS)
    garbage(tmp_path / "data" / "day=2024-03-02" / "part-0.parquet")
    result = train_stream(stream_config(), tmp_path / "data", tmp_path / "run",
                          LoopOptions(skip_bad_rows=True))
    assert [(d["day"], d["rows_trained"], d["steps"]) for d in result.metrics["days"]] == \
        [("2024-03-01", ROWS, 5), ("2024-03-02", 0, 0), ("2024-03-03", ROWS, 5)]
    assert result.global_step == 10

"""Streaming input: day discovery, shard layout, shuffle windows, seeking, streamed encoder, hashing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.streamdata import config_dict, stream_config, write_days
from watchnext.config import ConfigError, config_from_dict
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.errors import DataError
from watchnext.data.hashing import HashedVocabulary, hash_strings
from watchnext.data.io import ROW_COLUMN, SOURCE_COLUMN, read_tables
from watchnext.data.partitions import discover_days
from watchnext.data.scan import build_encoder, gathered, merge, scan
from watchnext.data.streaming import (
    ShardCursor,
    StreamLayout,
    needed_columns,
    prefetch,
    shard_steps,
    windows,
)


@pytest.fixture
def day_files(tmp_path):
    return write_days(tmp_path / "data", days=3, files_per_day=3, rows_per_file=211,
                      row_group_size=50)


def test_days_are_found_in_date_order(tmp_path, day_files):
    days, bad = discover_days(tmp_path / "data", stream_config())
    assert [d.name for d in days] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert [d.num_rows for d in days] == [633] * 3 and not bad
    assert days[0].files[0].row_group_starts == (0, 50, 100, 150, 200, 211)


def test_a_folder_that_is_not_a_day_is_refused(tmp_path, day_files):
    (tmp_path / "data" / "day=2024-13-40").mkdir()
    with pytest.raises(DataError, match="'day=2024-13-40' is not day=YYYY-MM-DD"):
        discover_days(tmp_path / "data", stream_config())


def test_no_partitions_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no day=YYYY-MM-DD folders found"):
        discover_days(tmp_path / "empty", stream_config())


def _rows_of(day, layout, shard, columns):
    seen = []
    for window in windows(day, layout, shard, columns, skip_bad=False):
        for piece in window.pieces:
            t = piece.table
            seen += list(zip(t[SOURCE_COLUMN].to_pylist(), t[ROW_COLUMN].to_pylist(), strict=True))
        assert window.raw_rows <= layout.window_rows
    return seen


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_shards_cover_every_row_of_a_day_exactly_once(tmp_path, day_files, shards):
    cfg = stream_config(batch_size=48)
    day = discover_days(tmp_path / "data", cfg)[0][0]
    layout = StreamLayout.build(48, shards, shuffle_buffer=70, read_rows=32)
    rows = [r for s in range(shards) for r in _rows_of(day, layout, s, needed_columns(cfg))]
    expected = [(str(f.path), i) for f in day.files for i in range(f.num_rows)]
    assert sorted(rows) == sorted(expected) and len(rows) == len(expected)


def test_window_is_a_multiple_of_the_shard_part():
    layout = StreamLayout.build(batch_size=64, shards=2, shuffle_buffer=100)
    assert (layout.part_rows, layout.window_rows) == (32, 128)
    with pytest.raises(ValueError, match="divisible by the number of shards"):
        StreamLayout.build(batch_size=64, shards=3, shuffle_buffer=100)


def _pass(encoder, layout, day, shard, epoch, step=0):
    cursor = ShardCursor(day, day.ordinal, epoch, step)
    return [p.batch for p in shard_steps(encoder, layout, shard, cursor, seed=7, skip_bad=False)]


def test_shuffle_is_seeded_per_epoch_and_keeps_every_row(tmp_path, day_files):
    cfg = stream_config(batch_size=32)
    day = discover_days(tmp_path / "data", cfg)[0][0]
    encoder = FeatureEncoder(cfg).fit(read_tables([str(f.path) for f in day.files]))
    layout = StreamLayout.build(32, 1, shuffle_buffer=200, read_rows=64)
    first, again, other = (_pass(encoder, layout, day, 0, e) for e in (0, 0, 1))
    assert len(first) == layout.steps(day) == 20
    cat = torch.cat([b.categorical for b in first])
    assert torch.equal(cat, torch.cat([b.categorical for b in again]))
    assert not torch.equal(cat, torch.cat([b.categorical for b in other]))
    plain = encoder.transform(read_tables([str(f.path) for f in day.files]))
    assert len(cat) == len(plain)
    assert not torch.equal(cat, plain.categorical)  # shuffled ...
    assert Counter(map(tuple, cat.tolist())) == Counter(map(tuple, plain.categorical.tolist()))


def test_seeking_to_a_step_gives_the_same_batches_as_reading_from_the_start(tmp_path, day_files):
    cfg = stream_config(batch_size=32)
    day = discover_days(tmp_path / "data", cfg)[0][0]
    encoder = FeatureEncoder(cfg).fit(read_tables([str(f.path) for f in day.files]))
    layout = StreamLayout.build(32, 2, shuffle_buffer=64, read_rows=40)
    for shard in (0, 1):
        full = _pass(encoder, layout, day, shard, epoch=0)
        for step in (1, 4, 7, len(full) - 1):
            tail = _pass(encoder, layout, day, shard, epoch=0, step=step)
            assert len(tail) == len(full) - step
            assert all(torch.equal(a.labels, b.labels) and torch.equal(a.categorical, b.categorical)
                       for a, b in zip(full[step:], tail, strict=True))


def test_a_shard_that_runs_out_first_gives_empty_parts(tmp_path):
    write_days(tmp_path / "data", days=1, files_per_day=1, rows_per_file=97)
    cfg = stream_config(batch_size=32)
    day = discover_days(tmp_path / "data", cfg)[0][0]
    encoder = FeatureEncoder(cfg).fit(read_tables([str(f.path) for f in day.files]))
    layout = StreamLayout.build(32, 2, shuffle_buffer=16)  # shards of 48 and 49 rows, parts of 16
    sizes = [[len(b) for b in _pass(encoder, layout, day, s, 0)] for s in (0, 1)]
    assert sizes == [[16, 16, 16, 0], [16, 16, 16, 1]]


def test_streamed_encoder_equals_in_memory_fit(tmp_path, day_files):
    cfg = config_from_dict({**config_dict(), "features": [
        *config_dict()["features"], {"name": "device_id", "kind": "categorical", "min_count": 100,
                                     "column": "device"}]})
    days, _ = discover_days(tmp_path / "data", cfg)
    layout = StreamLayout.build(63, 3, shuffle_buffer=100, read_rows=37)
    per_shard = [scan(cfg, days, layout, [s], skip_bad=False) for s in range(3)]
    streamed = build_encoder(cfg, merge(per_shard))
    in_memory = FeatureEncoder(cfg).fit(read_tables([str(f.path) for d in days for f in d.files]))
    assert streamed.state_dict()["vocabularies"] == in_memory.state_dict()["vocabularies"]
    for name, (mean, std) in in_memory.numeric_stats.items():
        assert streamed.numeric_stats[name] == pytest.approx((mean, std), rel=1e-9)


def test_scan_results_travel_as_json_and_merge_the_same(tmp_path, day_files):
    cfg = stream_config()
    days, _ = discover_days(tmp_path / "data", cfg)
    layout = StreamLayout.build(64, 2, shuffle_buffer=100)
    parts = [scan(cfg, days, layout, [s], skip_bad=False) for s in range(2)]
    gather = lambda _own: [p.to_bytes() for p in parts]  # noqa: E731 - what all_gather returns
    assert gathered(parts[0], gather).to_bytes() == merge(parts).to_bytes()


def test_prefetch_keeps_order_and_reraises_errors():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise DataError("broken", file="x.parquet", row=3)

    out = prefetch(failing())
    assert next(out) == 1
    with pytest.raises(DataError, match="x.parquet, row 3: broken"):
        next(out)


def test_hash_buckets_is_validated():
    bad = config_dict()
    bad["features"][3]["hash_buckets"] = 8
    with pytest.raises(ConfigError, match=r"features\[3\].hash_buckets: only id features"):
        config_from_dict(bad)
    negative = config_dict()
    negative["features"][0]["hash_buckets"] = -1
    with pytest.raises(ConfigError, match=r"features\[0\].hash_buckets: must be >= 0"):
        config_from_dict(negative)


def _reference_hash(text: str) -> int:
    """FNV-1a 64 then the splitmix64 finaliser, one byte at a time in plain Python."""
    mask, h = 2**64 - 1, 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & mask
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & mask
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & mask
    return h ^ (h >> 31)


def test_hashing_is_stable_in_range_and_type_blind():
    vocab = HashedVocabulary(1000)
    ids = vocab.lookup(pa.array([3, None, 12345678901]))
    assert ids[1] == 0 and 2 <= ids[0] < 1002 and 2 <= ids[2] < 1002
    assert vocab.lookup(pa.array(["3"]))[0] == ids[0] == vocab.lookup(pa.array([3.0]))[0]
    words = ["", "a", "video-42", "ünïcode", "x" * 40]
    assert [int(h) for h in hash_strings(pa.array(words))] == [_reference_hash(w) for w in words]
    assert int(hash_strings(pa.array(["a"]))[0]) == 0x02C0BDBF481420F8  # pinned: ids must not move
    spread = np.bincount(HashedVocabulary(16).lookup(pa.array(np.arange(16000))) - 2, minlength=16)
    assert spread.min() > 800


def test_hashed_features_need_no_vocabulary_and_survive_a_checkpoint(tmp_path, day_files):
    raw = config_dict()
    raw["features"][0]["hash_buckets"] = 64
    raw["features"][2]["hash_buckets"] = 16
    cfg = config_from_dict(raw)
    table = read_tables([str(p) for p in day_files[:2]])
    encoder = FeatureEncoder(cfg).fit(table)
    assert encoder.vocab_size("user_id") == 66 and encoder.vocab_size("tags") == 18
    restored = FeatureEncoder.from_state(cfg, encoder.state_dict())
    a, b = encoder.transform(table), restored.transform(table)
    assert torch.equal(a.categorical, b.categorical) and torch.equal(a.multi, b.multi)
    days, _ = discover_days(tmp_path / "data", cfg)
    streamed = build_encoder(cfg, scan(cfg, days, StreamLayout.build(64, 1, 100), [0], False))
    assert isinstance(streamed.vocabularies["user_id"], HashedVocabulary)


def test_files_with_different_int_widths_stream_together(tmp_path):
    paths = write_days(tmp_path / "data", days=1, files_per_day=2, rows_per_file=100)
    table = pq.read_table(paths[1])
    table = table.set_column(table.schema.get_field_index("user_id"), "user_id",
                             table["user_id"].cast(pa.int32()))
    pq.write_table(table, paths[1])
    cfg = stream_config(batch_size=50)
    days, bad = discover_days(tmp_path / "data", cfg)
    assert not bad
    encoder = FeatureEncoder(cfg).fit(read_tables([str(p) for p in paths]))
    batches = _pass(encoder, StreamLayout.build(50, 1, 200), days[0], 0, 0)
    assert sum(len(b) for b in batches) == 200


def test_crosses_and_a_log_without_user_or_device_stream_like_in_memory(tmp_path):
    """Crosses and categorical expressions count like ids; the optional user and device
    columns may be absent from the files (one device, no users), as in memory."""
    paths = write_days(tmp_path / "data", days=2, files_per_day=2, rows_per_file=150)
    for path in paths:
        pq.write_table(pq.read_table(path).drop(["user_id", "device"]), path)
    raw = config_dict(batch_size=50)
    raw["features"] = [f for f in raw["features"] if f["name"] != "user_id"] + [
        {"name": "video_tags", "kind": "categorical", "cross": ["video_id", "tags"]},
        {"name": "long", "kind": "categorical", "expression": "duration_ms > 30000"}]
    cfg = config_from_dict(raw)
    assert cfg.data.user_column == "user_id" and cfg.bias.device == "device"
    days, bad = discover_days(tmp_path / "data", cfg)
    assert not bad
    layout = StreamLayout.build(50, 2, shuffle_buffer=100)
    streamed = build_encoder(cfg, merge([scan(cfg, days, layout, [s], False) for s in (0, 1)]))
    in_memory = FeatureEncoder(cfg).fit(read_tables([str(p) for p in paths]))
    assert streamed.state_dict()["vocabularies"] == in_memory.state_dict()["vocabularies"]
    assert streamed.num_devices == in_memory.num_devices == 1
    assert streamed.vocab_size("long") == 4
    batches = _pass(streamed, layout, days[0], 0, 0)
    assert sum(len(b) for b in batches) == 150
    assert all((b.device == 0).all() and (b.users == -1).all() for b in batches)

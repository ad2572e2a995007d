"""The serving feature store: model inputs for (user, candidate videos, request context).

Built from the impression logs: for every user, every video and every (user, kind of video) pair
(see ``pairs``), the latest known value of each column that describes it (see ``roles``; point-in-time
history columns as of the day after the logs, as a training row of that day reads them), plus a
cold-start value for unknown ones: the id itself maps to the out-of-vocabulary bucket, numeric
columns take the median seen on first appearances (what the model saw for new users and videos
in training), other columns are missing. Context columns (hour, weekday, ...) come from the
request time, the device from the request; the display position is always missing.

Two equivalent paths produce the encoded inputs:
- ``raw_table`` composes an Arrow table of raw columns for the model's own ``FeatureEncoder``:
  general, and the reference;
- ``encode`` gathers rows of matrices pre-encoded once at load (user rows, item rows, pair rows,
  a cached context row) with numpy: no Arrow work per request. It is used whenever every feature
  reads columns of one role; a test proves both paths give identical inputs.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from watchnext.config import FeatureSpec
from watchnext.data.encoder import FeatureEncoder, feature_columns
from watchnext.data.history import history_as_of_end
from watchnext.retrieve.log import LogColumns, times_in_seconds
from watchnext.serve import roles as R
from watchnext.serve.context import derive, infer_utc_offset
from watchnext.serve.pairs import KIND as R_KIND
from watchnext.serve.pairs import USER as R_USER
from watchnext.serve.pairs import PairTable

COLD_KEY = "\x00watchnext-cold-start"  # never a real id, so it encodes to the OOV bucket
CONTEXT_CACHE = 4096


@dataclass
class Encoded:
    """Encoded model inputs for one request, as numpy arrays (row = candidate)."""

    categorical: np.ndarray  # [N, C] int64
    dense: np.ndarray  # [N, D] float32
    multi: np.ndarray  # [N, M, L] int64
    device: np.ndarray  # [N] int64
    known_user: bool
    known_items: np.ndarray  # [N] bool


class FeatureStore:
    """Latest known raw values per user, item and (user, kind) pair, and their encodings."""

    def __init__(self, encoder: FeatureEncoder, spec: dict[str, Any], users: pa.Table,
                 items: pa.Table, defaults: dict[str, Any], examples: dict[str, Any] | None = None,
                 pairs: dict[str, PairTable] | None = None):
        self.encoder, self.spec = encoder, spec
        self.pairs = pairs or {}
        self.examples = examples or {"users": [], "videos": []}
        self.users, self.items, self.defaults = users, items, defaults
        self.roles: dict[str, str] = spec["roles"]
        self.types = {name: _parse_type(t) for name, t in spec["types"].items()}
        self.user_column, self.item_column = spec["user_column"], spec["item_column"]
        self.device_column, self.offset = spec["device_column"], spec["utc_offset_minutes"]
        self.user_index = _index(users, self.user_column)
        self.item_index = _index(items, self.item_column)
        self.item_ids: list[str] = list(self.item_index)
        self._defaults = {c: _scalar(v, self.types[c]) for c, v in defaults.items()}
        self._context_cache: OrderedDict[tuple, Encoded] = OrderedDict()
        self._context_lock = threading.Lock()
        self.feature_roles = self._feature_roles()
        self.fast = all(r in (R.USER, R.ITEM, R.CONTEXT) or R.pair_key(r)
                        for r in self.feature_roles.values())
        if self.fast:
            self._precompute()

    # ---- building and saving ---------------------------------------------------------------

    @classmethod
    def build(cls, table: pa.Table, encoder: FeatureEncoder, columns: LogColumns,
              overrides: dict[str, str] | None = None) -> FeatureStore:
        """Learn roles, latest values and cold defaults from the logs."""
        cfg = encoder.config
        needed = sorted(_input_columns(encoder))
        user = cfg.data.user_column if cfg.data.user_column in table.column_names else ""
        day = cfg.data.day_column if cfg.data.day_column in table.column_names else ""
        roles = R.infer_roles(table, needed, user=user, item=columns.item,
                              device=cfg.bias.device, day=day, overrides=overrides)
        time_column = columns.time_column(table)
        order = np.argsort(times_in_seconds(table[time_column], time_column), kind="stable")
        ordered = table.take(pa.array(order))
        numeric_inputs = set().union(*[feature_columns(f) for f in encoder.numeric]) \
            if encoder.numeric else set()
        spec = {"user_column": user, "item_column": columns.item, "device_column": cfg.bias.device,
                "roles": roles, "utc_offset_minutes": infer_utc_offset(table),
                "types": {c: str(table.schema.field(c).type) for c in needed}}
        # Latest values as of the day after the logs (a row's history stops the day before it):
        # what a training row of the first day after the build reads. Cold defaults below come
        # from the rows as logged, as the model saw new keys in training.
        latest = history_as_of_end(ordered, cfg)
        users = _latest(latest, user, [c for c in needed if roles[c] == R.USER]) if user else \
            pa.table({})
        items = _latest(latest, columns.item, [c for c in needed if roles[c] == R.ITEM])
        pair_keys = sorted({R.pair_key(r) for r in roles.values() if R.pair_key(r)})
        pairs = {k: PairTable.build(latest, k, user, columns.item,
                                    [c for c in needed if R.pair_key(roles[c]) == k])
                 for k in pair_keys}
        defaults = {}
        for c in needed:
            key = {R.USER: user, R.ITEM: columns.item}.get(roles[c], R.pair_key(roles[c]))
            if key and c != key and c not in (user, columns.item):
                defaults[c] = _first_seen_median(ordered, key, c) if c in numeric_inputs else None
            elif roles[c] == R.CONSTANT:
                defaults[c] = _typical(ordered[c], c in numeric_inputs)
        return cls(encoder, spec, users, items, defaults, _examples(ordered, user, columns.item),
                   pairs)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.users, directory / "users.parquet")
        pq.write_table(self.items, directory / "items.parquet")
        pairs = [table.save(directory, f"pair{i}") for i, table in enumerate(self.pairs.values())]
        (directory / "store.json").write_text(json.dumps(
            {"spec": self.spec, "defaults": _jsonable(self.defaults), "examples": self.examples,
             "pairs": pairs}, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, encoder: FeatureEncoder) -> FeatureStore:
        directory = Path(directory)
        meta = json.loads((directory / "store.json").read_text())
        pairs = [PairTable.load(directory, entry) for entry in meta.get("pairs", [])]
        return cls(encoder, meta["spec"], pq.read_table(directory / "users.parquet"),
                   pq.read_table(directory / "items.parquet"), meta["defaults"],
                   meta.get("examples"), {p.key: p for p in pairs})

    # ---- lookups -----------------------------------------------------------------------------

    def knows_user(self, user_id: str | None) -> bool:
        return user_id is not None and user_id in self.user_index

    def knows_item(self, item_id: str | None) -> bool:
        return item_id is not None and item_id in self.item_index

    def item_details(self, item_id: str) -> dict[str, Any]:
        """The raw item columns served for this video (empty when unknown)."""
        row = self.item_index.get(item_id)
        if row is None:
            return {}
        return {c: self.items[c][row].as_py() for c in self.items.column_names}

    # ---- the reference path: raw columns through the model's encoder ---------------------

    def raw_table(self, user_id: str | None, item_ids: list[str], device: str | None,
                  when: dt.datetime) -> pa.Table:
        """All raw input columns for these candidates, ready for ``FeatureEncoder.transform``.

        An absent user or video id is served as an unseen id (the OOV bucket), like any
        unknown one.
        """
        return self._compose([user_id] * len(item_ids), item_ids, device, when)

    def _compose(self, user_ids: list[str | None], item_ids: list[str], device: str | None,
                 when: dt.datetime) -> pa.Table:
        """Raw columns for rows pairing ``user_ids[i]`` with ``item_ids[i]``."""
        n = len(item_ids)
        user_ids = [COLD_KEY if u is None else u for u in user_ids]
        entities = {R.USER: (self.users, self.user_column, user_ids,
                             [self.user_index.get(u) for u in user_ids]),
                    R.ITEM: (self.items, self.item_column, item_ids,
                             [self.item_index.get(i) for i in item_ids])}
        columns = {}
        for c, role in self.roles.items():
            kind = self.types[c]
            if role in entities:
                table, key, ids, rows = entities[role]
                if c == key:
                    columns[c] = pa.array(ids, pa.string())
                else:
                    values = table[c].take(pa.array(rows, pa.int64())).cast(kind)
                    default = self._defaults[c]
                    columns[c] = values if default is None else pc.fill_null(values, default)
            elif R.pair_key(role):
                pair = self.pairs[R.pair_key(role)]
                rows = [pair.row(u, i) for u, i in zip(user_ids, item_ids, strict=True)]
                values = pair.values[c].take(pa.array(rows, pa.int64())).cast(kind)
                default = self._defaults.get(c)
                columns[c] = values if default is None else pc.fill_null(values, default)
            elif role == R.DEVICE:
                columns[c] = pa.array([device] * n, pa.string())
            elif role == R.CONTEXT:
                columns[c] = pa.array([derive(c, when, self.offset, kind)] * n).cast(kind)
            else:
                columns[c] = pa.array([self._defaults[c]] * n, kind)
        return pa.table(columns)

    # ---- the fast path: gather pre-encoded rows --------------------------------------------

    def encode(self, user_id: str | None, item_ids: list[str], device: str | None,
               when: dt.datetime) -> Encoded:
        """Encoded inputs for one request; equal to encoding ``raw_table`` (tested)."""
        if not self.fast:
            batch = self.encoder.transform(self.raw_table(user_id, item_ids, device, when),
                                                 targets=False)
            return Encoded(batch.categorical.numpy(), batch.dense.numpy(), batch.multi.numpy(),
                           batch.device.numpy(), known_user=self.knows_user(user_id),
                           known_items=np.array([self.knows_item(i) for i in item_ids], bool))
        user = self.user_index.get(user_id, self._cold_user) if user_id is not None \
            else self._cold_user
        rows = np.fromiter((self.item_index.get(i, self._cold_item) for i in item_ids),
                           dtype=np.int64, count=len(item_ids))
        ctx = self._context(device, when)
        parts = []
        for items, users, context, (user_cols, ctx_cols) in (
                (self._items_enc.categorical, self._users_enc.categorical, ctx.categorical,
                 self._cat_cols),
                (self._items_enc.dense, self._users_enc.dense, ctx.dense, self._dense_cols),
                (self._items_enc.multi, self._users_enc.multi, ctx.multi, self._multi_cols)):
            out = items[rows]  # item columns (fancy indexing copies)
            out[:, user_cols] = users[user, user_cols]
            out[:, ctx_cols] = context[0, ctx_cols]
            parts.append(out)
        for key, (encoded, columns) in self._pairs_enc.items():
            pair_rows = self._pair_rows(key, user_id, rows)
            for out, values, cols in zip(parts, (encoded.categorical, encoded.dense,
                                                 encoded.multi), columns, strict=True):
                out[:, cols] = values[pair_rows][:, cols]
        return Encoded(*parts, device=np.full(len(rows), ctx.device[0], np.int64),
                       known_user=user != self._cold_user, known_items=rows != self._cold_item)

    def _pair_rows(self, key: str, user_id: str | None, item_rows: np.ndarray) -> np.ndarray:
        """Row of each candidate's (user, kind) in the pre-encoded pair matrix (cold: last)."""
        pair = self.pairs[key]
        kinds = self._item_kinds[key][item_rows]  # -1: unknown kind
        rows = np.full(self._kind_count[key] + 1, len(pair.values), np.int64)  # cold by default
        known = pair.rows.get(user_id) if user_id is not None else None
        if known:
            rows[np.fromiter(known.keys(), np.int64, len(known))] = np.fromiter(
                known.values(), np.int64, len(known))
        return rows[kinds]

    def _feature_roles(self) -> dict[str, str]:
        out = {}
        for f in self.encoder.config.features:
            kinds = {self.roles[c] for c in feature_columns(f)}
            kinds = {R.CONTEXT if k in (R.DEVICE, R.CONSTANT) else k for k in kinds}
            out[f.name] = kinds.pop() if len(kinds) == 1 else "mixed"
        return out

    def _precompute(self) -> None:
        """Encode every known user and item once, plus one cold-start row each (the last)."""
        epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        user_ids = [*self.user_index, COLD_KEY]
        item_ids = [*self.item_ids, COLD_KEY]
        self._cold_user, self._cold_item = len(user_ids) - 1, len(item_ids) - 1
        self._users_enc = self._encode_rows(user_ids, [COLD_KEY] * len(user_ids), epoch)
        self._items_enc = self._encode_rows([COLD_KEY] * len(item_ids), item_ids, epoch)
        enc = self.encoder

        def split(features: list[FeatureSpec]) -> tuple[np.ndarray, np.ndarray]:
            kinds = [self.feature_roles[f.name] for f in features]
            return (np.array([i for i, k in enumerate(kinds) if k == R.USER], np.int64),
                    np.array([i for i, k in enumerate(kinds) if k == R.CONTEXT], np.int64))

        self._cat_cols, self._dense_cols, self._multi_cols = (
            split(enc.categorical), split(enc.numeric), split(enc.multi))
        self._pairs_enc: dict[str, tuple[Encoded, tuple[np.ndarray, ...]]] = {}
        self._item_kinds: dict[str, np.ndarray] = {}
        self._kind_count: dict[str, int] = {}
        for key, pair in self.pairs.items():
            users = [*pair.values[R_USER].to_pylist(), COLD_KEY]
            items = [pair.representatives[k] for k in pair.values[R_KIND].to_pylist()] + [COLD_KEY]
            role = R.PAIR + key

            def cols(features: list[FeatureSpec], role: str = role) -> np.ndarray:
                return np.array([i for i, f in enumerate(features)
                                 if self.feature_roles[f.name] == role], np.int64)

            self._pairs_enc[key] = (self._encode_rows(users, items, epoch),
                                    (cols(enc.categorical), cols(enc.numeric), cols(enc.multi)))
            self._item_kinds[key] = np.array(
                [pair.item_kind.get(i, -1) for i in self.item_ids] + [-1], np.int64)
            self._kind_count[key] = max(pair.item_kind.values(), default=-1) + 1

    def _encode_rows(self, user_ids: list[str], item_ids: list[str], when: dt.datetime
                     ) -> Encoded:
        batch = self.encoder.transform(self._compose(user_ids, item_ids, None, when),
                                       targets=False)
        return Encoded(batch.categorical.numpy(), batch.dense.numpy(), batch.multi.numpy(),
                       batch.device.numpy(), True, np.ones(len(item_ids), bool))

    def _context(self, device: str | None, when: dt.datetime) -> Encoded:
        """One encoded row holding the request's context features, cached by its raw values."""
        key = (device, *(derive(c, when, self.offset, self.types[c]) for c, r in self.roles.items()
                         if r == R.CONTEXT))
        with self._context_lock:
            hit = self._context_cache.get(key)
            if hit is not None:
                self._context_cache.move_to_end(key)
                return hit
        batch = self.encoder.transform(self.raw_table(None, [COLD_KEY], device, when),
                                       targets=False)
        encoded = Encoded(batch.categorical.numpy(), batch.dense.numpy(), batch.multi.numpy(),
                          batch.device.numpy(), False, np.zeros(1, bool))
        with self._context_lock:
            self._context_cache[key] = encoded
            if len(self._context_cache) > CONTEXT_CACHE:
                self._context_cache.popitem(last=False)
        return encoded


def _input_columns(encoder: FeatureEncoder) -> set[str]:
    """Raw columns the encoder reads for model inputs (labels and position excluded)."""
    cfg = encoder.config
    needed = set().union(*(feature_columns(f) for f in cfg.features))
    if cfg.bias.device:
        needed.add(cfg.bias.device)
    if cfg.data.user_column:
        needed.add(cfg.data.user_column)
    return needed


def _latest(ordered: pa.Table, key: str, columns: list[str]) -> pa.Table:
    """Each key's last row (``ordered`` is sorted by time), keys as strings."""
    keys = pc.cast(ordered[key], pa.string())
    valid = np.flatnonzero(pc.is_valid(keys).to_numpy(zero_copy_only=False))
    codes = pc.dictionary_encode(keys.take(pa.array(valid)).combine_chunks()).indices.to_numpy()
    reversed_codes = codes[::-1]
    _, first = np.unique(reversed_codes, return_index=True)
    last = valid[len(codes) - 1 - first]
    rows = ordered.take(pa.array(np.sort(last)))
    out = {key: pc.cast(rows[key], pa.string())}
    out.update({c: rows[c] for c in columns if c != key})
    return pa.table(out)


def _examples(ordered: pa.Table, user: str, item: str, n: int = 100) -> dict[str, Any]:
    """The most active users (with the video each watched last) and the most shown videos."""
    items = pc.cast(ordered[item], pa.string()).to_numpy(zero_copy_only=False).astype(str)
    values, counts = np.unique(items, return_counts=True)
    videos = [str(v) for v in values[np.lexsort((values, -counts))][:n]]
    if not user:
        return {"users": [], "videos": videos}
    users = pc.cast(ordered[user], pa.string()).to_numpy(zero_copy_only=False).astype(str)
    last = {u: i for u, i in zip(users.tolist(), items.tolist(), strict=True)}
    ids, counts = np.unique(users, return_counts=True)
    top = ids[np.lexsort((ids, -counts))][:n]
    return {"users": [{"user_id": str(u), "last_video": last[str(u)]} for u in top],
            "videos": videos}


def _first_seen_median(ordered: pa.Table, key: str, column: str) -> float:
    """Median of ``column`` over each key's first row: what the model saw for newcomers."""
    keys = pc.cast(ordered[key], pa.string()).to_numpy(zero_copy_only=False)
    _, first = np.unique(keys.astype(str), return_index=True)
    values = pc.cast(ordered[column], pa.float64()).to_numpy(zero_copy_only=False)[first]
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else 0.0


def _typical(column: pa.ChunkedArray, numeric: bool) -> Any:
    if numeric:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        values = values[np.isfinite(values)]
        return float(np.median(values)) if len(values) else 0.0
    counts = pc.value_counts(column.drop_null())
    if len(counts) == 0:
        return None
    return counts.field("values")[int(np.argmax(counts.field("counts").to_numpy()))].as_py()


def _index(table: pa.Table, key: str) -> dict[str, int]:
    if not key or key not in table.column_names:
        return {}
    return {str(v): i for i, v in enumerate(table[key].to_pylist())}


def _scalar(value: Any, kind: pa.DataType) -> pa.Scalar | None:
    """A default as a scalar of the column's type (a median of an int column is rounded)."""
    if value is None:
        return None
    if pa.types.is_integer(kind) and isinstance(value, float):
        value = round(value)
    try:
        return pa.scalar(value, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.scalar(str(value), pa.string()).cast(kind)


def _parse_type(name: str) -> pa.DataType:
    try:
        return pa.type_for_alias(name)
    except ValueError:
        return pa.string()


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, dt.datetime | dt.date) else v)
            for k, v in values.items()}

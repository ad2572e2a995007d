"""Day-partitioned Parquet logs: find the ``day=YYYY-MM-DD`` folders and check every file's footer.

Only footers are read here (row counts, row-group boundaries, schema), so this is cheap however
large the data is, and it catches file-level problems before any training starts: a file that is
not readable Parquet, a required column missing, or a column of the wrong type. Every rank of a
distributed run does the same discovery and so agrees on the day's row numbering, which is what
shards are cut from.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from watchnext.config import RunConfig
from watchnext.data import expressions
from watchnext.data.errors import DataError

DAY_PREFIX = "day="


@dataclass(frozen=True)
class FileInfo:
    """One Parquet file: ``row_group_starts`` holds each row group's first row, then the total."""

    path: Path
    row_group_starts: tuple[int, ...]

    @property
    def num_rows(self) -> int:
        return self.row_group_starts[-1]


@dataclass(frozen=True)
class BadFile:
    """A file skipped as a whole (``--skip-bad-rows``); ``rows`` is None when the footer is gone."""

    path: str
    day: str
    reason: str
    rows: int | None
    message: str


@dataclass
class DayPartition:
    """The files of one day in a fixed order: their concatenation numbers the day's rows."""

    name: str
    files: list[FileInfo] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.files)

    @property
    def ordinal(self) -> int:
        return datetime.date.fromisoformat(self.name).toordinal()

    def fingerprint(self) -> str:
        """Changes when a file is added, removed or changes length: a resumed day must match."""
        listing = [[f.path.name, f.num_rows] for f in self.files]
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def column_roles(config: RunConfig) -> dict[str, str]:
    """Each input column the config reads: ``numeric``, ``id`` (any scalar) or ``list``."""
    roles: dict[str, str] = {}
    cfg = config
    for column in (cfg.data.user_column, cfg.data.request_column, cfg.bias.device):
        if column:
            roles[column] = "id"
    numeric = {c for t in cfg.tasks for c in expressions.columns(t.label)}
    for f in cfg.features:
        if f.expression:
            numeric |= expressions.columns(f.expression)
        elif f.kind == "numeric":
            numeric.add(f.source)
        elif f.kind == "categorical":
            for column in f.input_columns:
                roles.setdefault(column, "id")
        else:
            roles[f.source] = "list"
    if cfg.bias.position:
        numeric.add(cfg.bias.position)
    roles.update(dict.fromkeys(numeric, "numeric"))
    return roles


def optional_columns(config: RunConfig) -> set[str]:
    """Columns read where a file has them: the user and the device (see ``FeatureEncoder``)."""
    required = set(column_roles(config.replace(data={"user_column": ""}, bias={"device": ""})))
    return {c for c in (config.data.user_column, config.bias.device) if c} - required


def discover_days(root: str | Path, config: RunConfig, skip_bad: bool = False
                  ) -> tuple[list[DayPartition], list[BadFile]]:
    """The day partitions under ``root`` in date order, and the files skipped as bad.

    Without ``skip_bad`` the first bad file raises ``DataError`` naming it; with it, the file is
    left out and reported, so the caller can count its rows as skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("no such folder (expected day=YYYY-MM-DD/ partitions of Parquet)",
                        file=str(root))
    days = sorted(_day_folders(root), key=lambda pair: pair[0])
    if not days:
        raise DataError("no day=YYYY-MM-DD folders found", file=str(root))
    roles = column_roles(config)
    optional = optional_columns(config)
    reference: dict[str, tuple[pa.DataType, str]] = {}
    partitions, bad = [], []
    for name, folder in days:
        files = sorted(folder.rglob("*.parquet"))
        if not files:
            raise DataError("day folder holds no .parquet files", file=str(folder))
        day = DayPartition(name)
        for path in files:
            try:
                day.files.append(_inspect(path, roles, reference, optional))
            except _BadFile as exc:
                if not skip_bad:
                    raise exc.error from None
                bad.append(BadFile(str(path), name, exc.reason, exc.rows, str(exc.error)))
        partitions.append(day)
    return partitions, bad


def _day_folders(root: Path) -> list[tuple[str, Path]]:
    out = []
    for entry in root.iterdir():
        if not entry.is_dir() or entry.name.startswith((".", "_")):
            continue
        if not entry.name.startswith(DAY_PREFIX):
            raise DataError(f"unexpected folder {entry.name!r}: expected day=YYYY-MM-DD partitions",
                            file=str(root))
        name = entry.name[len(DAY_PREFIX):]
        try:
            datetime.date.fromisoformat(name)
        except ValueError:
            raise DataError(f"{entry.name!r} is not day=YYYY-MM-DD", file=str(entry)) from None
        out.append((name, entry))
    return out


class _BadFile(Exception):
    def __init__(self, reason: str, error: DataError, rows: int | None = None):
        super().__init__(str(error))
        self.reason, self.error, self.rows = reason, error, rows


def open_parquet(path: Path) -> pq.ParquetFile:
    """Open with page checksums verified, so a flipped bit in a data page fails loudly."""
    return pq.ParquetFile(path, page_checksum_verification=True)


def _inspect(path: Path, roles: dict[str, str], reference: dict[str, tuple[pa.DataType, str]],
             optional: set[str]) -> FileInfo:
    try:
        with open_parquet(path) as pf:
            meta, schema = pf.metadata, pf.schema_arrow
    except (pa.ArrowException, OSError) as exc:
        raise _BadFile("corrupt_file", DataError(f"not a readable Parquet file ({exc})",
                                                 file=str(path))) from None
    starts = [0]
    for i in range(meta.num_row_groups):
        starts.append(starts[-1] + meta.row_group(i).num_rows)
    rows = starts[-1]
    for column, role in sorted(roles.items()):
        if column not in schema.names and column in optional:
            continue
        if column not in schema.names:
            have = ", ".join(schema.names)
            raise _BadFile("missing_column", DataError(
                f"required column is missing (have: {have})", file=str(path), column=column), rows)
        kind = schema.field(column).type
        problem = _type_problem(kind, role)
        if problem is None and role == "id" and column in reference:
            first_type, first_file = reference[column]
            if _family(first_type) != _family(kind):
                problem = f"is {kind} here but {first_type} in {first_file}"
        if problem:
            raise _BadFile("wrong_type", DataError(f"wrong type: {problem}", file=str(path),
                                                   column=column), rows)
        reference.setdefault(column, (kind, str(path)))
    return FileInfo(path, tuple(starts))


def _type_problem(kind: pa.DataType, role: str) -> str | None:
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or \
        pa.types.is_boolean(kind) or pa.types.is_null(kind)
    if role == "numeric" and not numeric:
        return f"expected a numeric column, found {kind}"
    nested = pa.types.is_nested(kind)
    if role == "id" and nested:
        return f"expected a scalar id column, found {kind}"
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if role == "list" and not (is_list or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return f"expected a list or a separated string, found {kind}"
    return None


def _family(kind: pa.DataType) -> str:
    """Id columns may change width between files (int32/int64) but not kind (int/string)."""
    if pa.types.is_dictionary(kind):
        return _family(kind.value_type)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "number"
    return str(kind)

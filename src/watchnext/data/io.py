"""Reading impression logs (Parquet, CSV, TSV) into Arrow tables, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from watchnext.artifacts.atomic import atomic_path
from watchnext.data.errors import DataError

SOURCE_COLUMN = "__source_file__"
ROW_COLUMN = "__source_row__"
_TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")


def list_files(path: str | Path) -> list[Path]:
    """The data files under ``path`` (a file, or a folder searched recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in _TABLE_SUFFIXES)
        if files:
            return files
        raise DataError("folder holds no .parquet, .csv or .tsv files", file=str(path))
    raise DataError("no such file or folder", file=str(path))


def read_file(path: str | Path) -> pa.Table:
    """One file as a table, with its name and 0-based row numbers attached for error messages."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        elif path.suffix in (".csv", ".tsv"):
            delimiter = "\t" if path.suffix == ".tsv" else ","
            table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
        else:
            raise DataError(f"unsupported file type {path.suffix!r}", file=str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read table: {exc}", file=str(path)) from exc
    n = table.num_rows
    table = table.append_column(SOURCE_COLUMN, pa.array([str(path)] * n, pa.string()))
    return table.append_column(ROW_COLUMN, pa.array(range(n), pa.int64()))


def read_tables(paths: str | Path | list[str] | tuple[str, ...]) -> pa.Table:
    """Read and concatenate files; schemas are unified so differing int widths do not fail."""
    if isinstance(paths, str | Path):
        paths = [str(paths)]
    files = [f for p in paths for f in list_files(p)]
    if not files:
        raise DataError("no input files given")
    tables = [read_file(f) for f in files]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"files disagree on column types: {exc}", file=str(files[0])) from exc


def where(table: pa.Table, index: int) -> tuple[str, int | None]:
    """The (file, row) that table row ``index`` came from."""
    if SOURCE_COLUMN in table.column_names:
        return table[SOURCE_COLUMN][index].as_py(), table[ROW_COLUMN][index].as_py()
    return "<table>", index


def write_parquet_atomic(table: pa.Table, path: str | Path) -> None:
    """Write Parquet through a temporary file and a rename, so readers never see half a file."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)

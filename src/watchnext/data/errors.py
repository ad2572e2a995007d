"""Errors for bad input that say exactly where the problem is."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data. The message names the file, the column and (when known) the row."""

    def __init__(self, message: str, *, file: str = "", column: str = "", row: int | None = None):
        self.file, self.column, self.row = file, column, row
        where = [part for part in (file, f"column {column!r}" if column else "") if part]
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)

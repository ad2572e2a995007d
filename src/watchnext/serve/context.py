"""Request context: the time-of-request columns a model was trained on, derived from a timestamp.

Logs store context such as ``hour`` and ``weekday`` in the platform's local time. At serving we
only have the request time, so each known context column has a deriver, and the local-time offset
is read from the logs themselves (the most common difference between a row's ``hour`` and its
absolute timestamp), so a model trained on Beijing-time hours is served Beijing-time hours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchnext.retrieve.log import times_in_seconds

ABSOLUTE_TIME_COLUMNS = ("time_ms", "timestamp")


def _date(local: dt.datetime, kind: pa.DataType) -> object:
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return local.year * 10000 + local.month * 100 + local.day
    return local.strftime("%Y-%m-%d")


DERIVERS: dict[str, Callable[[dt.datetime, dt.datetime, pa.DataType], object]] = {
    "hour": lambda local, _utc, _t: local.hour,
    "hourmin": lambda local, _utc, _t: local.hour * 100 + local.minute,
    "minute": lambda local, _utc, _t: local.minute,
    "weekday": lambda local, _utc, _t: local.weekday(),
    "date": lambda local, _utc, kind: _date(local, kind),
    "day": lambda local, _utc, kind: _date(local, kind),
    "time_ms": lambda _local, utc, _t: int(utc.timestamp() * 1000),
    "timestamp": lambda _local, utc, _t: utc.replace(tzinfo=None),
}


def derive(column: str, when: dt.datetime, utc_offset_minutes: int, kind: pa.DataType) -> object:
    """The value of context ``column`` for a request at ``when`` (aware, or naive = UTC)."""
    utc = when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
    local = utc + dt.timedelta(minutes=utc_offset_minutes)
    return DERIVERS[column](local, utc, kind)


def infer_utc_offset(table: pa.Table) -> int:
    """Minutes to add to UTC to get the logs' local time; 0 when the logs cannot tell."""
    absolute = next((c for c in ABSOLUTE_TIME_COLUMNS if c in table.column_names), None)
    local = "hour" if "hour" in table.column_names else None
    if absolute is None or local is None or table.num_rows == 0:
        return 0
    seconds = times_in_seconds(table[absolute], absolute)
    hours = pc.fill_null(pc.cast(table[local], pa.float64()), -1.0).to_numpy()
    known = hours >= 0
    if not known.any():
        return 0
    utc_hours = np.floor(seconds[known] / 3600.0) % 24
    shift = (hours[known] - utc_hours) % 24
    values, counts = np.unique(shift.astype(np.int64), return_counts=True)
    offset = int(values[np.argmax(counts)])
    return (offset - 24 if offset > 12 else offset) * 60

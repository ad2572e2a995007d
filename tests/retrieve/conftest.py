"""Small hand-made impression logs whose right answers can be worked out by hand."""

from __future__ import annotations

import pyarrow as pa
import pytest

DAY_MS = 86_400_000
T0 = 1_650_000_000_000  # an arbitrary epoch in ms


def log_table(rows: list[tuple]) -> pa.Table:
    """rows: (user, video, day, minute, watched[, topic])."""
    columns = {"user_id": [r[0] for r in rows], "video_id": [r[1] for r in rows],
               "time_ms": [T0 + r[2] * DAY_MS + r[3] * 60_000 for r in rows],
               "is_click": [r[4] for r in rows]}
    if rows and len(rows[0]) > 5:
        columns["topic"] = [r[5] for r in rows]
    return pa.table(columns)


@pytest.fixture
def two_communities() -> pa.Table:
    """Users 0-9 watch videos a0..a4 in order; users 10-19 watch b0..b4; one skipped row."""
    rows = []
    for u in range(20):
        group = "a" if u < 10 else "b"
        for j in range(5):
            rows.append((u, f"{group}{(j + u) % 5}", 1, u * 10 + j, 1, f"topic-{group}"))
    rows.append((0, "b0", 1, 500, 0, "topic-b"))  # shown, not watched: must not link a's to b0
    return log_table(rows)

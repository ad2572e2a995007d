"""Reports as people read them: Rich tables for the terminal, Markdown for files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

METRICS = ("auc", "gauc", "logloss", "rmse")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4f}"
    return str(value)


def comparison_rows(reports: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Long format: one row per (task, metric), one column per model, cost in the last row."""
    models = list(reports)
    tasks = list(next(iter(reports.values()))["tasks"])
    header = ["task", "metric", *models]
    rows = [[task, metric, *[_fmt(reports[m]["tasks"][task].get(metric)) for m in models]]
            for task in tasks for metric in METRICS
            if any(metric in reports[m]["tasks"][task] for m in models)]
    rows.append(["(model)", "multiplications",
                 *[f"{reports[m].get('cost', {}).get('serving', 0):,}" for m in models]])
    return header, rows


def rich_table(title: str, header: list[str], rows: list[list[str]], fold: bool = False) -> Table:
    """Cells are plain text (no Rich markup); ``fold`` wraps long cells instead of cutting them
    with an ellipsis when the terminal is narrow."""
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(escape(name), justify="left" if i == 0 else "right",
                         overflow="fold" if fold else "ellipsis")
    for row in rows:
        table.add_row(*map(escape, row))
    return table


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def experts_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    gates = report.get("experts", {}).get("mean_gate", {})
    if not gates:
        return [], []
    n = len(next(iter(gates.values())))
    header = ["task", *[f"e{i}" for i in range(n)]]
    return header, [[t, *[f"{v:.3f}" for v in row]] for t, row in gates.items()]


def bias_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Learned bias logit per position (rows, then the serving value) for each (task, device)."""
    bias = report.get("learned_bias", {})
    if not bias:
        return [], []
    columns = [(task, device) for task, b in bias.items() for device in b["curves"]]
    positions = list(next(iter(bias.values()))["curves"][columns[0][1]])
    header = ["position", *[f"{t} {d}" for t, d in columns]]
    rows = [[p, *[f"{bias[t]['curves'][d][p]:+.3f}" for t, d in columns]] for p in positions]
    rows.append(["serving", *[f"{bias[t]['serving'][d]:+.3f}" for t, d in columns]])
    return header, rows

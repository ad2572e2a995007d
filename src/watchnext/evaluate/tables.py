"""Reports as people read them: Rich tables for the terminal, Markdown for pipes and files.

Rich fits a table to the console's width and cuts cells to ``…`` when it does not fit; piped or
logged output has no width to fit, so ``show`` writes Markdown there: every digit survives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from watchnext.evaluate.schema import ModelReport, Training

METRICS = ("auc", "gauc", "logloss", "rmse")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4f}"
    return str(value)


def metrics_rows(models: Mapping[str, ModelReport], split: str
                 ) -> tuple[list[str], list[list[str]]]:
    """One row per (task, metric); per model a serving column and, where the config has a
    position, a with-position column; cost in the last row."""
    evaluations = {m: r.evaluations[split] for m, r in models.items() if split in r.evaluations}
    if not evaluations:
        return [], []
    columns = [(m, "serving") for m in evaluations]
    columns += [(m, "with_position") for m, e in evaluations.items() if e.with_position is not None]
    columns.sort(key=lambda c: list(evaluations).index(c[0]))
    tasks = list(next(iter(evaluations.values())).serving)
    header = ["task", "metric", *[f"{m} {mode.replace('_', ' ')}" for m, mode in columns]]
    def value(m: str, mode: str, task: str, metric: str) -> Any:
        return (getattr(evaluations[m], mode) or {}).get(task, {}).get(metric)
    rows = [[task, metric, *[_fmt(value(m, mode, task, metric)) for m, mode in columns]]
            for task in tasks for metric in METRICS
            if any(metric in e.serving.get(task, {}) for e in evaluations.values())]
    rows.append(["(model)", "multiplications",
                 *[f"{models[m].cost.get('serving', 0):,}" for m, _ in columns]])
    return header, rows


def history_rows(training: Training) -> tuple[list[str], list[list[str]]]:
    """Per epoch: training and validation loss (total and per task), 6 significant digits; the
    epoch whose weights were kept is marked."""
    if not training.history:
        return [], []
    tasks = [t for t in training.history[0].train_loss if t != "total"]
    chunked = any(e.chunk for e in training.history)
    last = training.history[-1].chunk
    header = [*(["chunk"] if chunked else []), "epoch", "kept", "train total", "valid total",
              *[f"valid {t}" for t in tasks]]
    rows = []
    for e in training.history:
        valid = e.valid_loss or {}
        kept = e.epoch == training.kept_epoch and e.chunk == last
        rows.append([*([e.chunk or ""] if chunked else []), str(e.epoch), "*" if kept else "",
                     _precise(e.train_loss.get("total")), _precise(valid.get("total")),
                     *[_precise(valid.get(t)) for t in tasks]])
    return header, rows


def _precise(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


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


def show(console: Console, title: str, header: list[str], rows: list[list[str]]) -> None:
    """A Rich table on a terminal wide enough for it; elsewhere (pipe, file, CI log, a narrow
    terminal) a titled Markdown table, which never cuts a cell."""
    if console.is_terminal and _width(header, rows) <= console.width:
        console.print(rich_table(title, header, rows))
    else:
        console.print(f"\n{title}\n\n{markdown_table(header, rows)}\n", markup=False,
                      highlight=False, soft_wrap=True)


def _width(header: list[str], rows: list[list[str]]) -> int:
    """Characters a Rich table needs to show every cell whole (borders and padding: 3 a column)."""
    cells = [header, *rows]
    return 1 + sum(3 + max(len(row[i]) for row in cells) for i in range(len(header)))


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
    return header, [[t, *[f"{v:.4f}" for v in row]] for t, row in gates.items()]


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

"""The HTML report: a ``Report`` (watchnext.evaluate.schema) as one self-contained page.

Four pictures, each drawn only when the report holds what it needs: training curves per task
(the kept epoch marked), expert utilisation per model (a task x expert heatmap), the learned
position bias per device, and the per-task metrics of every model side by side, in serving mode
and with positions. Images are PNG data URIs, so the page is one file that opens anywhere,
offline. Figures are drawn with Matplotlib's object API on an Agg canvas: no pyplot, no backend
switch, nothing process-wide; Matplotlib is imported only when a picture is drawn (not by
every ``watchnext`` command).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from watchnext.artifacts.atomic import write_bytes_atomic
from watchnext.evaluate import tables
from watchnext.evaluate.bias import ALL_DEVICES, LearnedBias
from watchnext.evaluate.schema import ModelReport, Report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
PANEL = (3.6, 2.8)  # inches per subplot


def figures(report: Report) -> dict[str, tuple[str, bytes]]:
    """``{name: (caption, PNG bytes)}`` for every picture the report has data for."""
    out = {}
    for name, caption, draw in (
            ("training", "Training curves: loss per task by epoch (dashed line: the kept epoch)",
             training_figure),
            ("metrics", "Per-task metrics side by side: serving mode and with the logged position",
             metrics_figure),
            ("experts", "Expert utilisation: mean gate weight per task and expert", experts_figure),
            ("bias", "Learned position bias per device (logit added before the sigmoid)",
             bias_figure)):
        figure = draw(report)
        if figure is not None:
            out[name] = (caption, png(figure))
    return out


FIGURES = ("training", "metrics", "experts", "bias")


def write_html(path: str | Path, report: Report, png_dir: str | Path | None = None,
               only: Sequence[str] = ()) -> Path:
    """Write the page (atomically); with ``png_dir``, also the pictures as NAME.png there (all,
    or the ``only`` ones)."""
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        raise ValueError(f"no picture called {unknown[0]!r} (pictures: {', '.join(FIGURES)})")
    pictures = figures(report)
    if png_dir is not None:
        for name, (_, data) in pictures.items():
            if not only or name in only:
                write_bytes_atomic(Path(png_dir) / f"{name}.png", data)
    path = Path(path)
    write_bytes_atomic(path, page(report, pictures).encode())
    return path


def page(report: Report, pictures: Mapping[str, tuple[str, bytes]]) -> str:
    models = ", ".join(f"{name} ({m.kind}, {m.cost.get('serving', 0):,} multiplications)"
                       for name, m in report.models.items())
    parts = [f"<h1>watchnext {html.escape(report.command)} report</h1>",
             f"<p>{html.escape(models)}</p>"]
    for name, (caption, data) in pictures.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode()
        parts.append(f'<figure id="{name}"><img src="{uri}" alt="{html.escape(caption)}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    for split in _splits(report):
        header, rows = tables.metrics_rows(report.models, split)
        parts.append(_table(f"Metrics on {split}", header, rows))
    for name, model in report.models.items():
        if model.training is not None:
            header, rows = tables.history_rows(model.training)
            parts.append(_table(f"{name}: training history (kept epoch "
                                f"{model.training.kept_epoch})", header, rows))
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>watchnext {html.escape(report.command)} report</title><style>{STYLE}</style>"
            "</head><body>" + "\n".join(parts) + "</body></html>")


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}"
         "img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
         "text-align:right}td:first-child,th:first-child{text-align:left}")


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"


def _splits(report: Report) -> list[str]:
    return list(dict.fromkeys(s for m in report.models.values() for s in m.evaluations))


def png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _grid(n: int, columns: int = 4) -> tuple[Figure, list[Any]]:
    from matplotlib.figure import Figure

    cols = min(n, columns)
    rows = (n + cols - 1) // cols
    figure = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure, list(axes[:n])


def training_figure(report: Report) -> Figure | None:
    """Train (solid) and validation (dotted) loss per task, one line pair per model, by epoch."""
    trained = {n: m for n, m in report.models.items() if m.training and m.training.history}
    if not trained:
        return None
    panels: dict[str, list[tuple[int, str, ModelReport, str]]] = {}
    first = None
    for i, (name, model) in enumerate(trained.items()):
        tasks = list(model.training.history[0].train_loss)
        if len(tasks) == 2:  # one task: its "total" is the same curve
            tasks = [t for t in tasks if t != "total"]
        for task in tasks:  # models with other tasks (the demo's Open Bandit) get own panels
            first = first or tasks
            panels.setdefault(task if tasks == first else f"{name}: {task}", []).append(
                (i, name, model, task))
    figure, axes = _grid(len(panels))
    for ax, (title, lines) in zip(axes, panels.items(), strict=True):
        for i, name, model, task in lines:
            history = model.training.history
            x = np.arange(1, len(history) + 1)
            color = f"C{i}"
            ax.plot(x, [_nan(e.train_loss.get(task)) for e in history], color=color,
                    label=f"{name} train")
            if any(e.valid_loss for e in history):
                ax.plot(x, [_nan((e.valid_loss or {}).get(task)) for e in history], ":",
                        color=color, marker="o", markersize=3, label=f"{name} valid")
            kept = _kept_index(model)
            if kept is not None:
                ax.axvline(kept, color=color, linestyle="--", linewidth=0.8)
        _zoom_past_first_epoch(ax, lines)
        ax.set_title(title)
        ax.set_xlabel("epoch (all chunks)" if _chunked(trained) else "epoch")
        ax.set_ylabel("loss")
    axes[0].legend(fontsize=7)
    return figure


def _zoom_past_first_epoch(ax: Any, lines: list[tuple[int, str, ModelReport, str]]) -> None:
    """Fit the y axis to epochs 2+: the first epoch's loss, far above, would flatten the rest
    (it is drawn off the top of the panel)."""
    values = [v for _, _, model, task in lines for e in model.training.history[1:]
              for v in (e.train_loss.get(task), (e.valid_loss or {}).get(task)) if v is not None]
    if len(values) > 1 and max(values) > min(values):
        pad = 0.1 * (max(values) - min(values))
        ax.set_ylim(min(values) - pad, max(values) + pad)


def metrics_figure(report: Report) -> Figure | None:
    """Grouped bars per task: AUC (binary tasks), log loss and RMSE (regression tasks)."""
    split = next((s for s in ("test", "valid") if any(s in m.evaluations
                                                     for m in report.models.values())),
                 (_splits(report) or [None])[0])
    if split is None:
        return None
    bars = [(f"{name} {mode.replace('_', ' ')}", getattr(m.evaluations[split], mode))
            for name, m in report.models.items() if split in m.evaluations
            for mode in ("serving", "with_position") if getattr(m.evaluations[split], mode)]
    panels = [(metric, [t for t in bars[0][1] if metric in bars[0][1][t]])
              for metric in ("auc", "logloss", "rmse")]
    panels = [(metric, tasks) for metric, tasks in panels if tasks]
    if not panels:
        return None
    figure, axes = _grid(len(panels), columns=3)
    width = 0.8 / len(bars)
    for ax, (metric, tasks) in zip(axes, panels, strict=True):
        x = np.arange(len(tasks))
        for i, (label, values) in enumerate(bars):
            ax.bar(x + i * width - 0.4 + width / 2,
                   [_nan(values.get(t, {}).get(metric)) for t in tasks], width, label=label,
                   color=f"C{i}")
        ax.set_xticks(x, tasks, rotation=30, ha="right")
        ax.set_title(f"{metric} ({split})")
        if metric == "auc":
            ax.set_ylim(0.5, 1.0)
    axes[0].legend(fontsize=7)
    return figure


def experts_figure(report: Report) -> Figure | None:
    """Heatmap of the mean gate weight, tasks x experts, one panel per MMoE model."""
    gates = {}
    for name, model in report.models.items():
        for evaluation in model.evaluations.values():
            if evaluation.experts.get("mean_gate"):
                gates[name] = evaluation.experts["mean_gate"]
                break
    if not gates:
        return None
    figure, axes = _grid(len(gates), columns=2)
    for ax, (name, mean_gate) in zip(axes, gates.items(), strict=True):
        tasks = list(mean_gate)
        values = np.array([mean_gate[t] for t in tasks], dtype=float)
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=max(float(values.max()), 1e-9),
                          aspect="auto")
        ax.set_yticks(range(len(tasks)), tasks)
        ax.set_xticks(range(values.shape[1]), [f"e{i}" for i in range(values.shape[1])])
        for (r, c), v in np.ndenumerate(values):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < values.max() / 2 else "black")
        ax.set_title(f"{name}: mean gate weight")
        figure.colorbar(image, ax=ax, shrink=0.8)
    return figure


def bias_figure(report: Report) -> Figure | None:
    """The learned bias logit by position, one line per device, one panel per task and model."""
    from matplotlib.ticker import MaxNLocator

    panels = [(f"{name}: {task}", curves) for name, model in report.models.items()
              for task, curves in bias_curves(model.learned_bias).items() if curves]
    if not panels:
        return None
    figure, axes = _grid(len(panels), columns=3)
    for ax, (title, curves) in zip(axes, panels, strict=True):
        for device, points in curves.items():
            positions = sorted(points)
            ax.plot(positions, [points[p] for p in positions], marker="o", markersize=3,
                    label="all (no device column)" if device == ALL_DEVICES else device)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("position (1 = top)")
        ax.set_ylabel("bias logit")
        ax.legend(fontsize=6, ncol=2)
    return figure


def bias_curves(bias: Mapping[str, Any]) -> dict[str, dict[str, dict[int, float]]]:
    """``{task: {device: {position: logit}}}`` from the report's ``learned_bias``."""
    return {task: LearnedBias.from_json(value).curves for task, value in (bias or {}).items()}


def _kept_index(model: ModelReport) -> int | None:
    """The kept epoch's x position in the flattened history (last chunk)."""
    training = model.training
    if training is None or training.kept_epoch is None:
        return None
    last = training.history[-1].chunk
    for i, e in enumerate(training.history, start=1):
        if e.chunk == last and e.epoch == training.kept_epoch:
            return i
    return None


def _chunked(models: Mapping[str, ModelReport]) -> bool:
    return any(e.chunk for m in models.values() for e in m.training.history)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)

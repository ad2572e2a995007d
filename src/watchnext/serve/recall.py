"""``watchnext evaluate-retrieval``: a built model directory judged on held-out days.

The recall computation is ``watchnext.retrieve.evaluate``; this module adds what only the serving
side has: the model directory's pool and ranker (scored exactly as ``ServingModel.watch_next``
scores, with the service's feature store) and the run config's logs, split into the days the
sources were fitted on and the evaluation days after them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pyarrow as pa
import typer
from rich.console import Console

from watchnext.artifacts.checkpoint import write_json
from watchnext.config import ConfigError, RunConfig, day_ranges
from watchnext.data import sources
from watchnext.data.errors import DataError
from watchnext.evaluate import tables
from watchnext.retrieve.base import RetrievalError
from watchnext.retrieve.evaluate import Scorer, evaluate_retrieval, mix_rows, report_rows
from watchnext.retrieve.log import LogColumns

if TYPE_CHECKING:
    from watchnext.serve.service import ServingModel

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def serving_scorer(model: ServingModel) -> Scorer:
    """Scores as the service ranks: its feature store at the event's time, no device."""

    def score(user: str, query: str | None, ids: list[str], when: float) -> np.ndarray:
        enc = model.store.encode(user, ids, None, dt.datetime.fromtimestamp(when, dt.UTC))
        _, scores = model.backend.run(enc.categorical, enc.dense, enc.multi, enc.device)
        return np.asarray(scores)

    return score


def split_logs(config: RunConfig, days: list[str] | None) -> tuple[pa.Table, pa.Table]:
    """(history, evaluation): with ``days``, those days and every earlier row; without, the
    config's test split and its train + valid splits (what ``build-service`` fitted on)."""
    splits = sources.load_splits(config)
    if not days:
        if "test" not in splits:
            raise ConfigError("the config has no test split; choose evaluation days with --days")
        history = [splits[s] for s in ("train", "valid") if s in splits]
        return pa.concat_tables(history, promote_options="permissive"), splits["test"]
    rows = pa.concat_tables(list(splits.values()), promote_options="permissive")
    ranges = day_ranges(tuple(days), "--days")
    kind = type(ranges[0][0])
    keys = sources.day_values(rows, config.data.day_column, kind)
    chosen = np.zeros(len(keys), bool)
    for lo, hi in ranges:
        lo, hi = (v.toordinal() if isinstance(v, dt.date) else v for v in (lo, hi))
        chosen |= (keys >= lo) & (keys <= hi)
    if not chosen.any():
        raise DataError(f"--days {', '.join(days)} selects no rows", column=config.data.day_column)
    first = keys[chosen].min()
    return rows.filter(pa.array(keys < first)), rows.filter(pa.array(chosen))


def default_labels(config: RunConfig, table: pa.Table) -> list[str]:
    """Every binary task whose label is a plain column: click, long view, like, ..."""
    return [t.label for t in config.tasks if t.type == "binary" and t.label in table.column_names]


def evaluate_model_dir(model_dir: Path, days: list[str] | None = None,
                       labels: list[str] | None = None, pool_size: int | None = None,
                       rank: bool = True, seed: int = 0) -> dict[str, Any]:
    """Load ``model_dir`` and its config's logs, then ``evaluate_retrieval`` on them."""
    from watchnext.serve.service import ServingModel

    # PyTorch: where the service runs ONNX it was checked to agree within 1e-5 at load time
    model = ServingModel.load(model_dir, backend="torch")
    config = model.config
    history, evaluation = split_logs(config, days)
    columns = LogColumns(**model.manifest["columns"])
    labels = labels or default_labels(config, evaluation)
    for label in labels:
        if label not in evaluation.column_names:
            raise DataError("label column is missing from the evaluation days", column=label)
    report = evaluate_retrieval(model.pool, history, evaluation, labels, columns,
                                pool_size=pool_size, scorer=serving_scorer(model) if rank else None,
                                seed=seed)
    report["model_dir"] = str(model_dir)
    return report


def evaluate_retrieval_command(
    model_dir: Annotated[Path, typer.Argument(help="A model directory (watchnext build-service)")],
    days: Annotated[list[str] | None, typer.Option(
        help="Evaluation days, e.g. 2022-04-19..2022-04-21 (default: the config's test split); "
             "every earlier day is the history")] = None,
    label: Annotated[list[str] | None, typer.Option(
        help="Positive-event label column, repeatable (default: every binary task's label)")
                     ] = None,
    pool_size: Annotated[int | None, typer.Option(min=1, help="Pool size N (default: the "
                                                               "pool's cap)")] = None,
    rank: Annotated[bool, typer.Option(help="Rank each pool with the model (end-to-end "
                                            "recall@10)")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the random baseline")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report "
                                                                  "here")] = None,
) -> None:
    """Recall of the candidate pool, of each source and of popular/random baselines on held-out
    days, and where the ranker puts each hit."""
    from watchnext.serve.model_dir import ModelDirError

    try:
        report = evaluate_model_dir(model_dir, days, label, pool_size, rank, seed)
    except (ModelDirError, RetrievalError, ConfigError, DataError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_out, report)
    tables.show(console, f"retrieval of {model_dir} (pool {report['pool_size']}, catalogue "
                         f"{report['catalogue']:,})", *report_rows(report))
    tables.show(console, "where the pool's items come from", *mix_rows(report))

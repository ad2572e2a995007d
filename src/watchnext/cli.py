"""The ``watchnext`` command line: a thin layer over the Python API (watchnext.workflows)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from watchnext import workflows
from watchnext.artifacts.checkpoint import CheckpointError, write_json
from watchnext.config import ConfigError
from watchnext.data.errors import DataError
from watchnext.evaluate import tables
from watchnext.serve import commands as serve_commands
from watchnext.sim import commands as sim_commands
from watchnext.train import commands as train_commands

app = typer.Typer(help="Multitask watch-next ranking: train, evaluate, inspect, serve, simulate.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(soft_wrap=True)
USER_ERRORS = (ConfigError, DataError, CheckpointError, FileNotFoundError)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


@app.command()
def train(
    config: Path = typer.Argument(..., help="Run config (TOML)."),
    out: Path = typer.Option(Path("runs/model"), help="Folder for the checkpoint and metrics."),
    sequential: bool = typer.Option(False, help="Train day by day (data.day_column), warm-starting."),
    resume: bool = typer.Option(False, help="Sequential: continue after the last finished day."),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """Train a ranker; writes OUT/model (checkpoint) and OUT/metrics.json (validation and test)."""
    try:
        result = workflows.train(config, out, sequential=sequential, resume=resume,
                                 progress=not quiet, log=console.print)
    except USER_ERRORS as exc:
        _fail(exc)
    _print_report(result["report"], f"{result['name']} on test")
    console.print(f"model: {result['model_dir']}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Checkpoint folder (or run folder with LATEST)."),
    data: list[Path] = typer.Option(None, help="Parquet/CSV files or folders; default: test split."),
    json_out: Path = typer.Option(None, "--json", help="Also write the report as JSON here."),
) -> None:
    """Per-task AUC / log loss / RMSE, GAUC, NDCG@k, expert utilisation and position bias."""
    try:
        report = workflows.evaluate(model_dir, data or None, json_out)
    except USER_ERRORS as exc:
        _fail(exc)
    _print_report(report, f"evaluation of {model_dir}")


@app.command()
def inspect(model_dir: Path = typer.Argument(..., help="Checkpoint folder.")) -> None:
    """Model cost, expert utilisation on the validation data, and the learned position bias."""
    try:
        report = workflows.inspect(model_dir)
    except USER_ERRORS as exc:
        _fail(exc)
    cost = report["cost"]
    console.print(f"[bold]{report['model']}[/]: {cost['serving']:,} multiplications per example "
                  f"at serving (+{cost['shallow_tower']:,} shallow tower, training only)")
    console.print(", ".join(f"{k}={v:,}" for k, v in cost.items()))
    _print_gates_and_bias(report)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for models and the report."),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """SharedBottom vs MMoE at equal cost on kuairand-sample v1, plus the Open Bandit bias check."""
    result = workflows.demo(out, progress=not quiet, log=console.print)
    header, rows = tables.comparison_rows(result["reports"])
    console.print(tables.rich_table("kuairand-sample v1, test split (2022-04-19..21)", header, rows))
    _print_gates_and_bias(result["reports"]["MMoE"])
    header, rows = result["open_bandit_rows"]
    console.print(tables.rich_table("open-bandit-small: learned bias vs random-policy click rate",
                                    header, rows))
    console.print(f"report: {result['report_path']}")


@app.command()
def bias(
    logs: list[Path] = typer.Argument(..., help="Impression logs: Parquet/CSV files or folders."),
    config: Path = typer.Option(None, help="Run config: position, device, request, click columns."),
    model: Path = typer.Option(None, help="Trained model folder: check its shallow tower's curve."),
    out: Path = typer.Option(None, help="Folder for bias_audit.json and bias_audit.png."),
    json_out: Path = typer.Option(None, "--json", help="Also write the audit as JSON here."),
    click: str = typer.Option(None, help="Click column (0/1). Default: config, else 'click'."),
    position: str = typer.Option(None, help="Position column (1 = top). Default 'position'."),
    device: str = typer.Option(None, help="Device column; curves per device. Default: none."),
    item: str = typer.Option(None, help="Item id column. Default 'item_id'."),
    query: str = typer.Option(None, help="Query column: item effects per (query, item)."),
    request: str = typer.Option(None, help="Request column: the bootstrap unit. Default: rows."),
    randomised: str = typer.Option(None, help="Randomised traffic: 'all', COLUMN=VALUE or a 0/1 "
                                              "COLUMN. Default: policy=random if a policy column."),
    bootstrap: int = typer.Option(200, min=20, help="Bootstrap replicates (over requests)."),
    pbm: bool = typer.Option(True, "--pbm/--no-pbm", help="Also fit the position-based model."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Audit position bias in impression logs: per device, click rate by position on randomised
    traffic, a fixed-effects logit and a position-based click model, each with 95% intervals;
    with --model, a warning wherever the shallow tower falls outside them."""
    from watchnext.evaluate import bias_audit_report as report

    try:
        audit = workflows.bias_audit(logs, config, model, bootstrap, seed, pbm, click=click,
                                     position=position, device=device, item=item, query=query,
                                     request=request, randomised=randomised)
    except USER_ERRORS as exc:
        _fail(exc)
    header, rows = report.table_rows(audit)
    if console.is_terminal:
        console.print(tables.rich_table("position-bias audit", header, rows, fold=True))
    else:
        console.print(tables.markdown_table(header, rows), markup=False, highlight=False)
    for line in [*audit.verdicts(), *audit.notes]:
        console.print(line, markup=False, highlight=False)
    warnings = audit.warnings
    if warnings:
        worst = max(warnings, key=lambda w: w.distance)
        console.print(f"[bold yellow]warning:[/] the shallow tower falls outside the estimators' "
                      f"95% intervals at {len(warnings)} (estimator, device, position) cells; "
                      f"the largest gap: {escape(str(worst))}")
    for warning in warnings:
        console.print(f"[bold yellow]warning:[/] {escape(str(warning))}")
    payload = report.to_json(audit)
    if json_out:
        write_json(json_out, payload)
    if out:
        write_json(out / "bias_audit.json", payload)
        console.print(f"plot: {report.plot(audit, out / 'bias_audit.png')}", markup=False)


def _print_report(report: dict, title: str) -> None:
    header, rows = tables.comparison_rows({report.get("model", "model"): report})
    console.print(tables.rich_table(title, header, rows))
    ndcg = {k: v for k, v in report.get("ndcg_at_k", {}).items() if k != "k"}
    if ndcg:
        console.print("NDCG@{}: ".format(report["ndcg_at_k"]["k"])
                      + ", ".join(f"{k} {v:.4f}" for k, v in ndcg.items()))
    _print_gates_and_bias(report)


def _print_gates_and_bias(report: dict) -> None:
    header, rows = tables.experts_rows(report)
    if rows:
        console.print(tables.rich_table("expert utilisation (mean gate weight)", header, rows))
        polarised = report["experts"]["polarised_tasks"]
        if polarised:
            console.print(f"[bold yellow]warning:[/] gates polarised for {', '.join(polarised)}")
    header, rows = tables.bias_rows(report)
    if rows:
        console.print(tables.rich_table("learned position bias (logit)", header, rows))


sim_commands.register(app)
serve_commands.register(app)
train_commands.register(app)

if __name__ == "__main__":
    app()

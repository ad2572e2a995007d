"""The ``watchnext`` command line: a thin layer over the Python API (watchnext.workflows)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from watchnext import workflows
from watchnext.artifacts.checkpoint import CheckpointError
from watchnext.config import ConfigError
from watchnext.data.errors import DataError
from watchnext.evaluate import tables
from watchnext.serve import commands as serve_commands
from watchnext.serve.recall import evaluate_retrieval_command
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
app.command("evaluate-retrieval")(evaluate_retrieval_command)

if __name__ == "__main__":
    app()

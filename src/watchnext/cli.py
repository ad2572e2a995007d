"""The ``watchnext`` command line: a thin layer over the Python API (watchnext.workflows)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from watchnext import workflows
from watchnext.artifacts.checkpoint import CheckpointError, write_json
from watchnext.config import ConfigError
from watchnext.data.errors import DataError
from watchnext.evaluate import html, schema, tables
from watchnext.serve import commands as serve_commands
from watchnext.serve.recall import evaluate_retrieval_command
from watchnext.sim import commands as sim_commands
from watchnext.train import commands as train_commands

app = typer.Typer(help="Multitask watch-next ranking: train, evaluate, inspect, serve, simulate.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
USER_ERRORS = (ConfigError, DataError, CheckpointError, FileNotFoundError)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


JSON_HELP = "Also write the report (JSON, docs: README 'Reports') here; '-' prints it instead."


@app.command()
def train(
    config: Path = typer.Argument(..., help="Run config (TOML)."),
    out: Path = typer.Option(Path("runs/model"), help="Folder for the checkpoint and reports."),
    sequential: bool = typer.Option(False, help="Train day by day (data.day_column), warm-starting."),
    resume: bool = typer.Option(False, help="Sequential: continue after the last finished day."),
    quiet: bool = typer.Option(False, help="No progress bars."),
    json_out: str = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """Train a ranker; writes OUT/model (checkpoint), OUT/metrics.json and OUT/report.html."""
    log = _log_console(json_out).print
    try:
        result = workflows.train(config, out, sequential=sequential, resume=resume,
                                 progress=not quiet and json_out != "-", log=log)
    except USER_ERRORS as exc:
        _fail(exc)
    if _emit_json(result["report"], json_out):
        return
    _print_report(result["report"])
    console.print(f"model: {result['model_dir']}\nreports: {out / 'metrics.json'}, {result['html']}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Checkpoint folder (or run folder with LATEST)."),
    data: list[Path] = typer.Option(None, help="Parquet/CSV files or folders; default: test split."),
    json_out: str = typer.Option(None, "--json", help=JSON_HELP + " An HTML report goes beside it."),
    html_out: Path = typer.Option(None, "--html", help="Write the HTML report here."),
) -> None:
    """Per-task AUC / log loss / RMSE (serving and with positions), GAUC, NDCG@k, experts, bias."""
    try:
        report = workflows.evaluate(model_dir, data or None)
    except USER_ERRORS as exc:
        _fail(exc)
    _write_html(report, html_out, json_out)
    if _emit_json(report, json_out):
        return
    _print_report(report)


@app.command()
def inspect(
    model_dir: Path = typer.Argument(..., help="Checkpoint folder."),
    data: list[Path] = typer.Option(None, help="Also measure gates and metrics on these files."),
    json_out: str = typer.Option(None, "--json", help=JSON_HELP),
    html_out: Path = typer.Option(None, "--html", help="Write the HTML report here."),
) -> None:
    """Config, cost and the learned position bias (no data needed); with --data, gates and metrics."""
    try:
        report = workflows.inspect(model_dir, data or None)
    except USER_ERRORS as exc:
        _fail(exc)
    _write_html(report, html_out, None)
    if _emit_json(report, json_out):
        return
    for name, model in report.models.items():
        cost = model.cost
        console.print(f"[bold]{name}[/] ({model.kind}): {cost['serving']:,} multiplications per "
                      f"example at serving (+{cost['shallow_tower']:,} shallow tower, training only)")
        console.print(", ".join(f"{k}={v:,}" for k, v in cost.items()))
        tables.show(console, "tasks and score exponents", ["task", "type", "group", "exponent"],
                    [[t["name"], t["type"], t["group"], f"{t['exponent']:g}"] for t in model.tasks])
    _print_report(report)


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Checkpoint folder (or run folder with LATEST)."),
    data: list[Path] = typer.Option(..., help="Parquet/CSV files or folders to score."),
    out: Path = typer.Option(..., help="Parquet file for the scores."),
    with_position: bool = typer.Option(False, help="Add the bias of the logged slot (default: "
                                                   "serving mode, position treated as missing)."),
    exponent: list[str] = typer.Option(None, help="Override a score exponent: TASK=W (repeatable)."),
    keep: list[str] = typer.Option(None, help="Also copy this input column (repeatable), e.g. "
                                              "the video id."),
    json_out: str = typer.Option(None, "--json", help="Also write the summary (JSON) here; '-' "
                                                      "prints it instead."),
) -> None:
    """Per-row predictions of every task and the combined score, in input row order, to Parquet.

    Needs only the feature columns (and the device): no labels, position or request id.
    """
    try:
        summary = workflows.score(model_dir, data, out, with_position=with_position,
                                  exponents=_exponents(exponent), keep=keep or [])
    except USER_ERRORS as exc:
        _fail(exc)
    if _emit_json(summary, json_out):
        return
    console.print(f"scored {summary['rows']:,} rows -> {summary['out']} "
                  f"({'with the logged position' if with_position else 'serving mode'})")
    tables.show(console, "mean prediction", ["column", "exponent", "mean"],
                [[c, f"{summary['exponents'][c]:g}" if c in summary["exponents"] else "",
                  "-" if v is None else f"{v:.6g}"] for c, v in summary["mean"].items()])


@app.command()
def report(
    report_json: Path = typer.Argument(..., help="A report: metrics.json, evaluate/inspect --json "
                                                 "or the demo's report.json."),
    out: Path = typer.Option(..., help="The HTML file to write."),
    png_dir: Path = typer.Option(None, help="Also write each picture as NAME.png in this folder."),
    figure: list[str] = typer.Option(None, help="With --png-dir: only this picture (repeatable): "
                                                "training, metrics, experts, bias."),
) -> None:
    """Render a JSON report as HTML (and PNG pictures): checks the report schema on the way."""
    try:
        loaded = schema.Report.from_json(json.loads(report_json.read_text()))
    except (OSError, ValueError) as exc:
        _fail(ValueError(f"{report_json}: {exc}"))
    try:
        path = html.write_html(out, loaded, png_dir, only=figure or ())
    except ValueError as exc:
        _fail(exc)
    console.print(f"report: {path}" + (f", pictures in {png_dir}" if png_dir else ""))


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for models and the report."),
    quiet: bool = typer.Option(False, help="No progress bars."),
    json_out: str = typer.Option(None, "--json", help=JSON_HELP),
) -> None:
    """SharedBottom vs MMoE at equal cost on kuairand-sample v1, plus the Open Bandit bias check."""
    result = workflows.demo(out, progress=not quiet and json_out != "-",
                            log=_log_console(json_out).print)
    if _emit_json(result["report"], json_out):
        return
    _print_report(result["report"])
    header, rows = result["open_bandit_rows"]
    tables.show(console, "open-bandit-small: learned bias vs random-policy click rate", header, rows)
    console.print(f"reports: {result['report_path']}, {out / 'report.json'}, {result['html']}")


def _log_console(json_out: str | None) -> Console:
    """Progress and log lines go to stderr when stdout carries the JSON."""
    return err_console if json_out == "-" else console


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



def _emit_json(report: schema.Report | dict, json_out: str | None) -> bool:
    """Write the JSON to a file, or print it (and nothing else) for ``-``; True if printed."""
    if not json_out:
        return False
    data = report.to_json() if isinstance(report, schema.Report) else report
    if json_out == "-":
        print(json.dumps(data, indent=2))
        return True
    write_json(json_out, data)
    return False


def _write_html(report: schema.Report, html_out: Path | None, json_out: str | None) -> None:
    path = html_out or (Path(json_out).with_suffix(".html") if json_out and json_out != "-"
                        else None)
    if path is not None:
        html.write_html(path, report)
        if json_out != "-":
            console.print(f"HTML report: {path}")


def _exponents(pairs: list[str] | None) -> dict[str, float] | None:
    """``["like=0", "click=1.5"]`` -> ``{"like": 0.0, "click": 1.5}``; bad items exit 2."""
    if not pairs:
        return None
    parsed = {}
    for item in pairs:
        task, _, value = item.partition("=")
        try:
            parsed[task.strip()] = float(value)
        except ValueError:
            _fail(ValueError(f"--exponent {item!r}: expected TASK=NUMBER, e.g. like=0.5"))
    return parsed


def _print_report(report: schema.Report) -> None:
    """Per split: the metrics table; per model: training history, NDCG, gates and the bias."""
    splits = list(dict.fromkeys(s for m in report.models.values() for s in m.evaluations))
    for split in splits:
        header, rows = tables.metrics_rows(report.models, split)
        data = next(m.evaluations[split].data for m in report.models.values()
                    if split in m.evaluations)
        tables.show(console, f"{data}: task metrics (serving = position treated as "
                             "missing; with position = logged slot's bias added)", header, rows)
    for name, model in report.models.items():
        training = model.training
        if training is not None and report.command == "train":
            header, rows = tables.history_rows(training)
            if rows:
                tables.show(console, f"{name}: training losses per epoch (* = kept epoch "
                                     f"{training.kept_epoch})", header, rows)
        elif training is not None:
            console.print(f"{name}: kept epoch {training.kept_epoch} of {training.epochs_run}"
                          f"{' (stopped early)' if training.stopped_early else ''}"
                          + (f"; training history from {training.source}" if training.source
                             else ""))
        for evaluation in model.evaluations.values():
            ndcg = {k: v for k, v in evaluation.ndcg_at_k.items() if k != "k"}
            if ndcg:
                console.print(f"{name} NDCG@{evaluation.ndcg_at_k['k']} ({evaluation.data}): "
                              + ", ".join(f"{k} {_num(v)}" for k, v in ndcg.items()))
            _print_gates(name, evaluation.experts)
        header, rows = tables.bias_rows({"learned_bias": model.learned_bias})
        if rows:
            tables.show(console, f"{name}: learned position bias (logit)", header, rows)


def _print_gates(name: str, experts: dict) -> None:
    header, rows = tables.experts_rows({"experts": experts})
    if rows:
        tables.show(console, f"{name}: expert utilisation (mean gate weight)", header, rows)
        polarised = experts.get("polarised_tasks")
        if polarised:
            console.print(f"[bold yellow]warning:[/] gates polarised for {', '.join(polarised)}")


def _num(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


sim_commands.register(app)
serve_commands.register(app)
train_commands.register(app)
app.command("evaluate-retrieval")(evaluate_retrieval_command)

if __name__ == "__main__":
    app()

"""CLI commands of the service: ``build-service``, ``recommend`` and ``serve``.

They only parse arguments and print; the work is in ``workflows.build_service``,
``ServingModel`` and ``run_server``. They belong to the CLI layer, above everything they call, and
import serving only when they run: the serving dependencies are an extra (``watchnext[serve]``),
and without it each command says so and exits with code 2 instead of the CLI failing to start.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err = Console(stderr=True, soft_wrap=True)
PIPE_WIDTH = 1000  # off a terminal, tables take their natural width instead of cutting cells


def _out() -> Console:
    """The console for results: the terminal's width, or (piped, logged) wide enough that no
    cell is cut to ``…``."""
    return console if console.is_terminal else Console(width=PIPE_WIDTH)

# what the service needs at run time, all from the serve extra (pyproject.toml)
SERVE_EXTRA_MODULES = ("fastapi", "uvicorn", "onnx", "onnxruntime", "faiss")
SERVE_INSTALL = "pip install 'watchnext[serve]'"


def require_serve_extra(command: str) -> None:
    """Exit with code 2, naming the extra to install, if a serving dependency is missing."""
    missing = [name for name in SERVE_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        err.print(f"[red]error:[/red] `watchnext {command}` needs the serve extra (missing: "
                  f"{', '.join(missing)}); install it with: {escape(SERVE_INSTALL)}")
        raise typer.Exit(2)


def build_service(
    config: Annotated[Path, typer.Argument(help="Run config (TOML), e.g. configs/kuairand_v1.toml; "
                                                "with --model only its [data] is read")],
    out: Annotated[Path, typer.Argument(help="Model directory to write (e.g. models/v1)")],
    train: Annotated[list[str] | None, typer.Option(help="Training logs (default: the config's "
                                                         "data.train, else its bundled dataset)")
                     ] = None,
    valid: Annotated[list[str] | None, typer.Option(help="Validation logs")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override train.max_epochs")] = None,
    item_column: Annotated[str, typer.Option(help="The video id column")] = "video_id",
    max_candidates: Annotated[int, typer.Option(min=1, help="Candidate pool cap")] = 300,
    onnx: Annotated[bool, typer.Option(help="Export the serving graph to ONNX")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists")] = False,
    model: Annotated[Path | None, typer.Option(help="A trained checkpoint (e.g. OUT/model of "
                                                    "`watchnext train`): build from it, no training")
                     ] = None,
) -> None:
    """Train a ranker (or take --model) and write a servable model directory (retrieval +
    features + ONNX)."""
    require_serve_extra("build-service")
    import pyarrow as pa

    from watchnext.config import ConfigError, load_config
    from watchnext.data.errors import DataError
    from watchnext.serve.data import training_tables
    from watchnext.serve.model_dir import ModelDirError, build_model_dir
    from watchnext.workflows import build_service as train_and_build

    options = {"item_column": item_column, "max_candidates": max_candidates, "onnx": onnx,
               "overwrite": overwrite, "log": console.print}
    try:
        cfg = load_config(config)
        if epochs is not None:
            cfg = cfg.replace(train={"max_epochs": epochs})
        train_table, valid_table = training_tables(cfg, train, valid)
        if model is None:
            path = train_and_build(cfg, train_table, out, valid=valid_table, **options)
        else:
            logs = pa.concat_tables([t for t in (train_table, valid_table) if t is not None],
                                    promote_options="permissive")
            path = build_model_dir(model, logs, out, **options)
    except (ModelDirError, ConfigError, DataError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    manifest = json.loads((path / "service.json").read_text())
    console.print(f"ONNX: {json.dumps(manifest['onnx'])}")


def recommend(
    model_dir: Annotated[Path, typer.Argument(help="A model directory or a registry of them")],
    user: Annotated[str | None, typer.Option(help="User id (omit for an anonymous user)")] = None,
    video: Annotated[str | None, typer.Option(help="The video being watched")] = None,
    k: Annotated[int, typer.Option(min=1, max=100, help="How many to return")] = 10,
    device: Annotated[str | None, typer.Option(help="Device type (one the model knows)")] = None,
    backend: Annotated[str, typer.Option(
        help="torch | onnx | auto. One list: torch starts fastest (auto times both, as the "
             "server does)")] = "torch",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Print the watch-next list for a user watching a video (the newest version that loads)."""
    require_serve_extra("recommend")
    from watchnext.evaluate import tables
    from watchnext.serve.model_dir import ModelDirError
    from watchnext.serve.registry import ModelRegistry, VersionNotFound

    _check_backend(backend)
    registry = ModelRegistry(model_dir, backend=backend)  # type: ignore[arg-type]
    try:
        model = registry.load()
    except (ModelDirError, VersionNotFound) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    versions = registry.versions()
    refused = versions[versions.index(model.version) + 1:]
    if refused:
        err.print(f"[yellow]note:[/yellow] serving {model.version}: refused "
                  f"{', '.join(refused)} (they do not load)")
    if device is not None and model.devices and device not in model.devices:
        err.print(f"[red]error:[/red] --device {device!r}: model {model.version} knows "
                  f"{', '.join(model.devices)}")
        raise typer.Exit(2)
    ranking = model.watch_next(user, video, device, k=k)
    if as_json:
        _out().print_json(json.dumps({
            "model_version": ranking.model_version, "known_user": ranking.known_user,
            "known_video": ranking.known_video, "candidates": ranking.candidates,
            "items": [{"rank": r, "video_id": i.video_id, "score": i.score,
                       "predictions": i.predictions, "source": i.source, "sources": i.sources}
                      for r, i in enumerate(ranking.items, start=1)]}))
        return
    title = (f"watch next for user {user or '(anonymous)'} after video {video or '-'} "
             f"(model {ranking.model_version}, {ranking.candidates} candidates"
             f"{'' if ranking.known_user else ', new user'}"
             f"{'' if ranking.known_video or video is None else ', unknown video'})")
    rows = [[str(r), item.video_id, f"{item.score:.4g}",
             *(f"{item.predictions[t]:.4g}" for t in model.task_names), ", ".join(item.sources)]
            for r, item in enumerate(ranking.items, start=1)]
    tables.show(console, title, ["#", "video", "score", *model.task_names, "source"], rows)


def serve(
    model_dir: Annotated[Path, typer.Argument(help="A model directory or a registry of them")],
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port")] = 8000,
    version: Annotated[str | None, typer.Option(help="Version to serve (default: newest)")] = None,
    backend: Annotated[str, typer.Option(help="auto | onnx | torch")] = "auto",
    threads: Annotated[int, typer.Option(min=1, help="Threads per inference")] = 1,
) -> None:
    """Serve the HTTP API, the web page (/) and the docs (/docs, offline). Starts on the newest
    version that loads; admin reload needs WATCHNEXT_ADMIN_TOKEN set."""
    require_serve_extra("serve")
    from watchnext.serve.model_dir import ModelDirError
    from watchnext.serve.registry import VersionNotFound
    from watchnext.serve.server import run_server

    _check_backend(backend)
    try:
        run_server(model_dir, host, port, version, backend, threads)  # type: ignore[arg-type]
    except (ModelDirError, VersionNotFound) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _check_backend(backend: str) -> None:
    if backend not in ("auto", "onnx", "torch"):
        err.print(f"[red]error:[/red] --backend must be auto, onnx or torch, not {backend!r}")
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main CLI."""
    app.command("build-service")(build_service)
    app.command("recommend")(recommend)
    app.command("serve")(serve)

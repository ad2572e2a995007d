"""``watchnext train-stream``: the command-line face of ``watchnext.train.streaming.train_stream``.

Works alone or under torchrun (``torchrun --nproc-per-node 2 -m watchnext train-stream ...``);
see docs/distributed.md. ``python -m watchnext.train.commands train-stream ...`` runs the same
command without the rest of the CLI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from watchnext.artifacts.checkpoint import CheckpointError
from watchnext.config import ConfigError, load_config
from watchnext.data.errors import DataError
from watchnext.train.loop import LoopOptions
from watchnext.train.streaming import train_stream


def register(app: typer.Typer) -> None:
    """Add ``train-stream`` to the main CLI."""
    app.command("train-stream")(train_stream_command)


def train_stream_command(
    config: Annotated[Path, typer.Argument(help="Run config (TOML).")],
    data: Annotated[Path, typer.Option(help="Folder of day=YYYY-MM-DD/ Parquet partitions.")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints/, LATEST, metrics.json.")],
    resume: Annotated[bool, typer.Option(
        help="Continue from the newest checkpoint that verifies (older ones if it is corrupt).")] = False,
    skip_bad_rows: Annotated[bool, typer.Option(
        help="Skip and count bad rows and files instead of stopping at the first.")] = False,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Checkpoint every N steps "
                                                  "(and at the end of every day).")] = 1000,
    keep: Annotated[int, typer.Option(min=1, help="Step checkpoints to keep.")] = 3,
    shards: Annotated[int | None, typer.Option(
        min=1, help="Data shards (default: number of processes); results depend on shards, "
                    "not on processes.")] = None,
    shuffle_buffer: Annotated[int | None, typer.Option(
        min=1, help="Rows per shard shuffled together (default 100000).")] = None,
    epochs_per_day: Annotated[int | None, typer.Option(min=1, help="Passes over each day "
                                                       "(default 1).")] = None,
    valid: Annotated[Path | None, typer.Option(
        help="Validation file or folder, evaluated after each day.")] = None,
    quiet: Annotated[bool, typer.Option(help="No log lines.")] = False,
) -> None:
    """Stream day partitions from disk and train (one process, or many under torchrun)."""
    options = LoopOptions(
        resume=resume, skip_bad_rows=skip_bad_rows, checkpoint_every=checkpoint_every, keep=keep,
        shards=shards, shuffle_buffer=shuffle_buffer, epochs_per_day=epochs_per_day)
    try:
        result = train_stream(load_config(config), data, out, options, valid,
                              log=None if quiet else _echo)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError) as exc:
        rank = os.environ.get("RANK")
        where = f"[rank {rank}] " if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""
        typer.echo(f"{where}error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if not quiet and os.environ.get("RANK", "0") == "0" and result.checkpoint is not None:
        _echo(f"model: {result.checkpoint} (step {result.global_step}); "
              f"metrics: {result.run_dir / 'metrics.json'}")


def _echo(message: str) -> None:
    typer.echo(message)
    sys.stdout.flush()


def _main() -> None:
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """watchnext streaming training."""

    register(app)
    app()


if __name__ == "__main__":
    _main()

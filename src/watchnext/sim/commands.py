"""CLI commands of the simulator (``watchnext experiment``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main CLI."""

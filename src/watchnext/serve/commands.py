"""CLI commands of the service (``watchnext serve``, ``watchnext recommend``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main CLI."""

"""``python -m watchnext.serve ...``: the service commands without the main CLI."""

import typer

from watchnext.serve.commands import register

app = typer.Typer(help="watchnext service commands", no_args_is_help=True)
register(app)

if __name__ == "__main__":
    app()

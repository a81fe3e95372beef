"""The Typer application every command module registers on (see ``postsale.cli``)."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="postsale",
    help="Post-sale email journeys: validate, preview and simulate journeys, ingest events, "
         "dispatch mail, serve the API, report.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
console = Console()
err_console = Console(stderr=True)

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


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every decision (holds, skips).")) -> None:
    """Post-sale email journeys with guardrails the engine enforces."""
    import logging

    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler], force=True)

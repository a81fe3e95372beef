"""`postsale simulate`: replay events on a virtual clock; print every decision."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from postsale.cli_app import app, console, err_console
from postsale.commands._common import fail, parse_until, read_input, settings
from postsale.events import decode_batch, parse_batch
from postsale.spec.catalog import load_catalog

STYLE = {"sent": "green", "held": "yellow", "skipped": "magenta", "suppressed": "red",
         "exited": "dim", "entered": "cyan", "alert": "bold red"}


@app.command()
def simulate(
    events: str = typer.Option(..., "--events", help="Events file (JSON array, object or NDJSON; '-' for stdin)."),
    until: str = typer.Option(None, "--until", help="Stop at this RFC 3339 time (default: 60 days after the last event)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object a line, in time order."),
    journeys: Path = typer.Option(None, help="Journeys folder (default POSTSALE_JOURNEYS)."),
    templates: Path = typer.Option(None, help="Templates folder (default POSTSALE_TEMPLATES)."),
) -> None:
    """Run the journeys on a virtual clock and a throwaway database, sending nothing.

    The clock starts at the first event, applies each event at its occurred_at and jumps
    straight to the next due moment. Times are UTC.
    """
    from postsale.store.simulate import simulate as run_simulation
    cfg = settings()
    journeys = journeys or cfg.journeys
    templates = templates or cfg.templates
    stop = parse_until(until)
    good, rejected = parse_batch(decode_batch(read_input(events)))
    for r in rejected:
        err_console.print(f"[red]rejected[/] event #{r.index} ({escape(r.event_id or 'no id')}): "
                          f"{escape(r.field)}: {escape(r.reason)}", highlight=False)
    catalog = load_catalog(journeys, templates)
    for problem in catalog.errors:
        err_console.print(f"[yellow]left out:[/] {escape(str(problem))}", highlight=False)
    if not catalog.journeys:
        fail(f"no valid journey in {journeys}", hint="run: postsale validate")
    result = run_simulation([e for _, e in good], journeys=journeys, templates=templates, until=stop)
    for dup in result.duplicates:
        err_console.print(f"[dim]duplicate event {dup} ignored[/]")
    if as_json:
        for entry in result.timeline:
            typer.echo(json.dumps(entry, ensure_ascii=False))
        return
    table = Table("at (UTC)", "customer", "journey / step", "action", "subject or reason",
                  title=f"simulation: {len(good)} events", expand=True)
    for e in result.timeline:
        detail = e["subject"] if e["action"] == "sent" else e.get("reason", "")
        where = e["journey"] or "-" if not e["step"] else f"{e['journey']} / {e['step']}"
        style = STYLE.get(e["action"], "")
        table.add_row(e["at"][:16].replace("T", " "), e["customer"] or "-", where,
                      f"[{style}]{e['action']}[/]" if style else e["action"], escape(detail or ""))
    console.print(table)

"""`postsale ingest FILE`: take events from a JSON/NDJSON file or stdin."""

from __future__ import annotations

import json

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from postsale.cli_app import app, console
from postsale.commands._common import build_context, read_input, settings
from postsale.events import decode_batch
from postsale.store.ingest import IngestResult, ingest_items

CHUNK = 1000


@app.command()
def ingest(
    file: str = typer.Argument(..., help="Events as one JSON object, an array, or NDJSON; '-' reads stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Take events (SPEC §2): bad ones are rejected naming the field, the rest go through.

    Duplicates (an id seen before) are accepted, reported and ignored.
    """
    cfg = settings()
    ctx = build_context(cfg)
    items = decode_batch(read_input(file))
    result = IngestResult()
    with Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=as_json or len(items) < CHUNK) as progress:
        task = progress.add_task("ingest", total=len(items))
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            part = ingest_items(ctx, chunk)
            # indexes count from the start of the file, not of the chunk
            part.rejected = [type(r)(r.index + start, r.event_id, r.field, r.reason) for r in part.rejected]
            result.merge(part)
            progress.advance(task, len(chunk))
    if as_json:
        console.print_json(json.dumps(result.to_json()))
    else:
        console.print(f"accepted [green]{len(result.accepted)}[/], duplicate {len(result.duplicates)}, "
                      f"rejected [red]{len(result.rejected)}[/], runs started {len(result.entered)}")
        if result.rejected:
            table = Table("#", "id", "field", "reason", title="rejected events")
            for r in result.rejected[:50]:
                table.add_row(str(r.index), r.event_id or "-", r.field, r.reason)
            console.print(table)
        if result.entered:
            console.print("next: [bold]postsale dispatch[/] sends what is due now")
    raise typer.Exit(1 if result.rejected and not result.accepted else 0)

"""`postsale forget EMAIL`: erase a person's data, keeping only a hashed suppression entry."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from postsale.cli_app import app, console
from postsale.commands._common import build_context, fail, settings


@app.command()
def forget(
    email: str = typer.Argument(..., help="The address to forget (case does not matter)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be erased; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Erase every customer with this address: profile, events' personal data, mail bodies.

    Runs end, queued mail is cancelled, and a hashed suppression (scope all) keeps the address
    from ever being mailed again. The API equivalent is DELETE /customers?email=.
    """
    from postsale.store.erase import forget as erase

    if "@" not in email:
        fail(f"{email!r} is not an email address", hint="e.g. postsale forget ada@example.com")
    ctx = build_context(settings())
    report = erase(ctx, email, dry_run=dry_run)
    if as_json:
        console.print_json(json.dumps(report.to_json()))
        return
    counts = report.to_json()
    title = "would erase (dry run)" if dry_run else "erased"
    table = Table("what", "rows", title=f"{title}: {email.strip().lower()}")
    for key in ("customers", "events", "runs", "runs_ended", "messages", "messages_cancelled", "timeline",
                "survey_responses", "delivery_events", "purchases"):
        table.add_row(key.replace("_", " "), str(counts[key]))
    console.print(table)
    console.print(f"suppression {report.suppression}: sha256 {report.email_hash[:16]}… (scope all, reason forgotten)"
                  + (" — not saved: dry run" if dry_run else ""))
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if not report.customers:
        console.print("no customer had this address; it is suppressed all the same")

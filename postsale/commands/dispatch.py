"""`postsale dispatch`: advance every due customer once, now, and deliver the outbox."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from postsale.cli_app import app, console
from postsale.commands._common import build_context, fail, settings
from postsale.delivery.factory import make_transport
from postsale.errors import ConfigError
from postsale.store.delivery import deliver
from postsale.store.dispatch import dispatch as run_dispatch


@app.command()
def dispatch(
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    no_deliver: bool = typer.Option(False, "--no-deliver", help="Decide and queue only; leave delivery to another process."),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=0,
        help="Processes that decide a large batch (0: one per core; 1: this one only). "
             "Default: POSTSALE_DISPATCH_WORKERS."),
) -> None:
    """Advance every due customer once: decide, queue in the outbox, hand to the transport."""
    cfg = settings()
    ctx = build_context(cfg)
    try:
        transport = None if no_deliver else make_transport(cfg)
    except ConfigError as exc:
        fail(str(exc))
    report = run_dispatch(ctx, workers=workers)
    delivered = deliver(ctx, transport, reconcile_after=cfg.delivery_reconcile_after) if transport else None
    if as_json:
        out = report.to_json()
        out["delivery"] = delivered.to_json() if delivered else None
        console.print_json(json.dumps(out))
        return
    table = Table("journey", "entered", "sent", "held", "skipped", "suppressed", "exited", "alert",
                  title=f"dispatch: {report.customers} customers, {report.runs} runs")
    for journey, counts in sorted(report.by_journey.items()):
        table.add_row(journey, *[str(counts.get(a, 0)) for a in
                                 ("entered", "sent", "held", "skipped", "suppressed", "exited", "alert")])
    console.print(table)
    if delivered:
        console.print(f"delivered {delivered.sent} via {transport.name}, retrying {delivered.retried}, "
                      f"failed {delivered.failed}")
        if transport.name == "outbox":
            console.print(f"emails are in [bold]{cfg.outbox}/[/] (open the .eml files in a mail client)")

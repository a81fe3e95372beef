"""`postsale report`: per journey, entered / sent / held / skipped (by reason) / exited."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from postsale.cli_app import app, console
from postsale.commands._common import fail, parse_since, settings
from postsale.store.report import build_report


def print_report(reports, title: str) -> None:
    table = Table("journey", "entered", "sent", "held", "skipped", "suppr.", "exited", "alerts", title=title)
    for rep in reports:
        table.add_row(rep.journey, *[str(rep.counts.get(a, 0)) for a in
                                     ("entered", "sent", "held", "skipped", "suppressed", "exited", "alert")])
    console.print(table)
    details = Table("journey", "delivery", "survey scores", title="delivery and surveys")
    for rep in reports:
        scores = ", ".join(f"{k} {sum(v) / len(v):.1f} (n={len(v)})" for k, v in rep.scores.items() if v)
        delivery = ", ".join(f"{k} {v}" for k, v in sorted(rep.delivery.items()))
        if scores or delivery:
            details.add_row(rep.journey, delivery or "-", scores or "-")
    if details.row_count:
        console.print(details)
    reasons = [(rep.journey, reason, n) for rep in reports for reason, n in rep.skipped_by_reason.most_common()]
    if reasons:
        skipped = Table("journey", "skipped or suppressed because", "count", title="skip reasons")
        for journey, reason, n in reasons:
            skipped.add_row(journey, reason, str(n))
        console.print(skipped)


@app.command()
def report(
    since: str = typer.Option("7d", help="How far back: 30m, 12h, 7d, 4w."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Per journey since a moment: entered, sent, held, skipped by reason, exited, survey scores."""
    from models import create_db_engine, init_db
    cfg = settings()
    start = parse_since(since)
    try:
        engine = create_db_engine(cfg.database_url)
        init_db(engine)
    except Exception as exc:
        fail(f"cannot open the database {cfg.database_url}: {exc}", hint="check POSTSALE_DATABASE_URL")
    reports = build_report(engine, since=start)
    if as_json:
        console.print_json(json.dumps([r.to_json() for r in reports]))
        return
    if not reports:
        console.print(f"nothing happened in the last {since}. Try [bold]postsale demo[/] for sample data.")
        return
    print_report(reports, f"postsale report — last {since}")

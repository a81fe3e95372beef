"""`postsale demo`: a complete run on sample data — events in, emails out, a report."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select
from sqlmodel import Session

from postsale.cli_app import app, console
from postsale.clock import VirtualClock
from postsale.commands._common import build_context, fail, settings
from postsale.commands.report import print_report
from postsale.errors import ConfigError


@app.command()
def demo(
    customers: int = typer.Option(24, min=1, max=100_000, help="How many sample customers."),
    days: int = typer.Option(30, min=1, max=365, help="How many days of journeys to play (on a virtual clock)."),
    seed: int = typer.Option(7, help="Random seed for the sample data."),
) -> None:
    """Play sample customers through the shipped journeys on a virtual clock.

    Orders, deliveries, support requests, a ticket and a product incident go in; the emails
    land in the outbox (POSTSALE_OUTBOX, default outbox/) as .eml files; the report follows.
    Uses POSTSALE_DATABASE_URL (default sqlite:///postsale.db): run `postsale report` after.
    """
    from models import Customer as CustomerRow
    from models import Message
    from postsale.delivery.factory import make_transport
    from postsale.demo_data import demo_parsed, survey_answer
    from postsale.store.ingest import customer_scope
    from postsale.store.report import build_report
    from postsale.store.virtual import run_virtual

    cfg = settings()
    start = datetime.now(timezone.utc).replace(microsecond=0)
    tag = f"demo{start:%y%m%d%H%M%S}"
    clock = VirtualClock(start)
    ctx = build_context(cfg, clock=clock)
    if not ctx.catalog.journeys:
        fail(f"no valid journey in {cfg.journeys}", hint="run: postsale validate")
    try:
        transport = make_transport(cfg)
    except ConfigError as exc:
        fail(str(exc))
    events = demo_parsed(start=start, customers=customers, tag=tag, seed=seed)
    rng = random.Random(seed)

    def answer_surveys(ctx, now):
        with Session(ctx.engine) as session:
            rows = session.execute(select(Message, CustomerRow).join(CustomerRow, CustomerRow.id == Message.customer_id)
                                   .where(Message.is_survey.is_(True), Message.created_at == now)).all()
        out = []
        for message, customer in rows:
            ev = survey_answer(tag=tag, message=message, at=now + timedelta(hours=rng.uniform(1, 30)),
                               rng=rng, customer=customer_scope(customer))
            if ev is not None:
                out.append(ev)
        return out

    until = start + timedelta(days=days)
    total_seconds = (until - start).total_seconds()
    with Progress(TextColumn("[bold]demo[/] {task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("day 0", total=total_seconds)

        def tick(moment, done, total):
            progress.update(task, completed=(moment - start).total_seconds(),
                            description=f"day {(moment - start).days} · events {done}/{total}")

        run = run_virtual(ctx, events, until=until, transport=transport, on_tick=tick, react=answer_surveys)
    with Session(ctx.engine) as session:
        sent = session.scalar(select(Message.id).where(Message.status == "sent").limit(1))
    reports = [r for r in build_report(ctx.engine, since=start - timedelta(seconds=1))]
    console.print(f"[bold green]demo done[/]: {customers} customers, {len(run.ingested.accepted)} events, "
                  f"{days} days played in {run.ticks} steps of the virtual clock")
    print_report(reports, f"demo {tag}")
    if transport.name == "outbox":
        console.print(f"emails: [bold]{cfg.outbox}/[/] (.eml files: open one in a mail client)")
    from sqlalchemy.engine import make_url
    shown = make_url(cfg.database_url).render_as_string(hide_password=True)
    console.print(f"database: {shown} · next: [bold]postsale report --since 60d[/], "
                  f"[bold]postsale validate[/], [bold]postsale simulate --events FILE[/]")
    if not sent:
        fail("the demo sent no email", hint="run postsale validate to see what is wrong with the journeys")

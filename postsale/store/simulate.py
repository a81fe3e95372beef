"""`postsale simulate`: the real engine on a virtual clock and a throwaway database.

Nothing is sent: the outbox rows are written and thrown away with the database. The timeline
is read back in time order, in the shape SPEC.md §6 fixes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select
from sqlmodel import Session

from models import Timeline
from postsale.clock import VirtualClock
from postsale.events import Event, Rejected
from postsale.settings import DEV_SECRET
from postsale.store.context import Context
from postsale.store.runs import aware
from postsale.store.virtual import run_virtual


@dataclass
class Simulation:
    timeline: list[dict[str, Any]]
    rejected: list[Rejected]
    duplicates: list[str]


def utc_text(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def entry(row: Timeline) -> dict[str, Any]:
    out: dict[str, Any] = {"at": utc_text(aware(row.at)), "customer": row.customer_id,
                           "journey": row.journey_id, "step": row.step_id, "action": row.action}
    if row.action == "sent":
        out["template"], out["subject"] = row.template, row.subject
    elif row.action != "entered":
        out["reason"] = row.reason or ""
    return out


def simulate(events: list[Event], *, journeys: Path, templates: Path, until: datetime | None = None,
             rejected: list[Rejected] | None = None,
             on_tick: Callable[[datetime, int, int], None] | None = None) -> Simulation:
    ordered = sorted(events, key=lambda e: e.occurred_at)
    start = ordered[0].occurred_at if ordered else datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="postsale-sim-") as tmp:
        ctx = Context.build(database_url=f"sqlite:///{tmp}/simulate.db", journeys=journeys,
                            templates=templates, secret=DEV_SECRET, clock=VirtualClock(start))
        run = run_virtual(ctx, ordered, until=until, on_tick=on_tick)
        with Session(ctx.engine) as session:
            rows = session.scalars(select(Timeline).order_by(Timeline.at, Timeline.id)).all()
            timeline = [entry(r) for r in rows]
        ctx.engine.dispose()
    return Simulation(timeline, list(rejected or []) + run.ingested.rejected, run.ingested.duplicates)

"""Run journeys on a virtual clock: what `simulate` and `demo` share with production.

The clock starts at the first event, applies each event at its ``occurred_at``, and jumps
straight to the next moment anything is due (the next event or the earliest ``next_run_at``):
no polling, so 60 days of journeys take as long as the decisions in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from postsale.clock import VirtualClock
from postsale.delivery.base import Transport
from postsale.events import Event
from postsale.store.context import Context
from postsale.store.delivery import deliver
from postsale.store.dispatch import dispatch, next_due
from postsale.store.ingest import IngestResult, ingest_events

DEFAULT_HORIZON = timedelta(days=60)
MAX_TICKS = 1_000_000


@dataclass
class VirtualRun:
    ingested: IngestResult
    ticks: int
    started: datetime | None
    stopped: datetime | None


def run_virtual(ctx: Context, events: list[Event], *, until: datetime | None = None,
                transport: Transport | None = None,
                on_tick: Callable[[datetime, int, int], None] | None = None,
                react: Callable[[Context, datetime], list[Event]] | None = None) -> VirtualRun:
    """Apply ``events`` in time order and dispatch at every due moment up to ``until``.

    ``react`` lets a scenario answer what was just sent (a customer answering a survey): the
    events it returns join the queue at their own ``occurred_at``.
    """
    clock = ctx.clock
    if not isinstance(clock, VirtualClock):
        raise TypeError("run_virtual needs a Context built with a VirtualClock")
    pending = sorted(events, key=lambda e: e.occurred_at)
    ingested = IngestResult()
    if not pending:
        return VirtualRun(ingested, 0, None, None)
    stop = until or pending[-1].occurred_at + DEFAULT_HORIZON
    start = pending[0].occurred_at
    clock.set(start)
    ticks, position, last = 0, 0, None
    while ticks < MAX_TICKS:
        candidates = []
        if position < len(pending):
            candidates.append(pending[position].occurred_at)
        due = next_due(ctx)
        # a run still due at the moment just dispatched is stuck for now: never spin on it
        if due is not None and (last is None or due > last):
            candidates.append(max(due, clock.now()))
        if not candidates:
            break
        moment = min(candidates)
        if moment > stop:
            break
        clock.set(moment)
        last = moment
        batch = []
        while position < len(pending) and pending[position].occurred_at <= moment:
            batch.append(pending[position])
            position += 1
        if batch:
            ingested.merge(ingest_events(ctx, batch))
        dispatch(ctx)
        if transport is not None:
            deliver(ctx, transport)
        if react is not None:
            later = [e for e in react(ctx, moment) if e.occurred_at > moment]
            if later:
                pending = pending[:position] + sorted(pending[position:] + later, key=lambda e: e.occurred_at)
        ticks += 1
        if on_tick:
            on_tick(moment, position, len(pending))
    return VirtualRun(ingested, ticks, start, clock.now())

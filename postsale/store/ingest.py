"""Ingest: events in, customers and runs updated, in one transaction a batch.

Each event is validated alone (a bad one is rejected naming its field, the rest go through),
stored under its id (a duplicate insert is the dedupe: guarantee 1), and then applied: the
customer upserted, purchases recorded for incident fan-out, tickets counted, suppressions
applied at once, survey answers stored, runs exited (`exit_when`), woken (`wait_for`) or
started (triggers, with the `reentry` rules).

Concurrency (PostgreSQL; SQLite has one writer): a batch goes in three steps — store every
event (ON CONFLICT DO NOTHING: what is new), upsert the customers of the new ones
(``INSERT ... ON CONFLICT DO UPDATE`` holds each customer's row lock to commit), then apply the
events in order. Whatever reads a customer's runs to decide (reentry rules, one active run per
journey, exits, wakes) does so holding that customer's lock, the same lock a dispatcher holds
while it advances the customer, so two processes can never both enroll or both decide. Events
and customers are locked in key order, so two batches never wait on each other in a circle; a
deadlock PostgreSQL still breaks (an incident locking its audience) is retried.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from models import Customer as CustomerRow
from models import Event as EventRow
from models import Purchase, Run, SurveyResponse, Suppression, Timeline
from postsale.errors import ExpressionError
from postsale.events import (SUPPRESSING_TYPES, Event, Rejected, decode_batch, parse_batch,
                             parse_timestamp)
from postsale.engine.types import RunStatus
from postsale.sandbox import Answers, truthy
from postsale.spec.model import Journey
from postsale.store.context import Context
from postsale.store.runs import aware, context_of, to_state
from postsale.store.sql import email_hash, insert_ignore, insert_new, is_retryable, upsert_touch

log = logging.getLogger("postsale.ingest")

UNFINISHED = (RunStatus.active.value, RunStatus.waiting.value, RunStatus.held.value)
_RUN_NS = uuid.UUID("6f1c1a43-4a0e-4d1b-9a1e-5d3b2c0f7e11")
ATTEMPTS = 3   # a batch PostgreSQL aborted to break a deadlock is tried again, whole


@dataclass
class IngestResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    entered: list[str] = field(default_factory=list)          # run ids started
    customers: set[str] = field(default_factory=set)          # customers whose runs changed

    def merge(self, other: "IngestResult") -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.entered += other.entered
        self.customers |= other.customers

    def to_json(self) -> dict[str, Any]:
        return {"accepted": len(self.accepted), "duplicate": len(self.duplicates),
                "rejected": [r.to_json() for r in self.rejected], "duplicates": self.duplicates,
                "entered": len(self.entered)}


def ingest_text(ctx: Context, text: str) -> IngestResult:
    """One object, an array or NDJSON, as posted or read from a file."""
    return ingest_items(ctx, decode_batch(text))


def ingest_items(ctx: Context, items: list[Any]) -> IngestResult:
    good, bad = parse_batch(items)
    result = ingest_events(ctx, [event for _, event in good])
    result.rejected = bad + result.rejected
    return result


def ingest_events(ctx: Context, events: Iterable[Event]) -> IngestResult:
    """Store and apply validated events, in the order given, in one transaction."""
    events = list(events)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _ingest(ctx, events)
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == ATTEMPTS:
                raise
            log.warning("ingest of %d events retried (attempt %d): %s", len(events), attempt + 1,
                        str(exc.orig).splitlines()[0])
    raise AssertionError("unreachable")


def _ingest(ctx: Context, events: list[Event]) -> IngestResult:
    result = IngestResult()
    now = ctx.clock.now()
    with Session(ctx.engine) as session:
        new = _store(session, events, now)
        customers = _lock_customers(session, [e for e in events if e.id in new], now)
        for event in events:
            if event.id not in new:
                result.duplicates.append(event.id)
                continue
            new.discard(event.id)   # the same id twice in one batch: the second is a duplicate
            result.accepted.append(event.id)
            _apply(session, ctx, event, customers, now, result)
        session.commit()
    return result


def _store(session: Session, events: list[Event], now: datetime) -> set[str]:
    """Insert the events (key order); the ids that were new to the database."""
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        rows.setdefault(event.id, {
            "id": event.id, "type": event.type, "occurred_at": event.occurred_at, "received_at": now,
            "customer_id": event.customer.id if event.customer else None, "data": event.data,
            "customer_snapshot": event.customer.scope() if event.customer else None})
    return set(insert_new(session, EventRow, [rows[key] for key in sorted(rows)], ["id"]))


def _lock_customers(session: Session, events: list[Event], now: datetime) -> dict[str, CustomerRow]:
    """Create the customers that are new and lock every customer of the batch until commit."""
    first: dict[str, dict[str, Any]] = {}
    for event in events:
        c = event.customer
        if c is not None and c.id not in first:
            first[c.id] = {"id": c.id, "email": c.email, "name": c.name, "timezone": c.timezone,
                           "locale": c.locale, "attributes": dict(c.attributes), "open_tickets": 0,
                           "created_at": now, "updated_at": now}
    upsert_touch(session, CustomerRow, list(first.values()), touch="updated_at")
    ids = sorted(first)
    return {row.id: row for start in range(0, len(ids), 1000)   # loaded once, not once an event
            for row in session.scalars(select(CustomerRow).where(CustomerRow.id.in_(ids[start:start + 1000])))}


# ---------------------------------------------------------------- effects of one event

def _apply(session: Session, ctx: Context, event: Event, customers: dict[str, CustomerRow], now: datetime,
           result: IngestResult) -> None:
    if event.customer is not None:
        _merge_customer(customers[event.customer.id], event, now)
        result.customers.add(event.customer.id)
    if event.type == "order.placed":
        _record_purchases(session, event)
    elif event.type in ("ticket.opened", "ticket.resolved"):
        _count_ticket(session, event, now, result)
    elif event.type in SUPPRESSING_TYPES and event.customer is not None:
        suppress(session, event.customer.email, SUPPRESSING_TYPES[event.type], source=event.id, now=now)
    elif event.type == "survey.answered" and event.customer is not None:
        _store_answers(session, event, now)
    if event.customer is not None:
        unfinished = _unfinished_runs(session, event.customer.id)
        _exit_runs(session, ctx, event, unfinished, now)
        _wake_waiting(event, unfinished, now, result)
    elif event.is_broadcast:  # incident.resolved: every affected customer waiting for it
        ids = [c["id"] for c in _audience(session, event)]
        unfinished = [r for r in session.scalars(select(Run).where(Run.customer_id.in_(ids),
                                                                   Run.status.in_(UNFINISHED)))
                      if _same_incident(r, event)] if ids else []
        _exit_runs(session, ctx, event, unfinished, now)
        _wake_waiting(event, unfinished, now, result)
    _start_triggered(session, ctx, event, now, result)


def _same_incident(run: Run, event: Event) -> bool:
    """A resolution concerns the runs its own incident started (when both name one)."""
    started_by = ((run.context or {}).get("trigger") or {}).get("data") or {}
    theirs, ours = started_by.get("incident_id"), event.data.get("incident_id")
    return theirs is None or ours is None or theirs == ours


def _merge_customer(row: CustomerRow, event: Event, now: datetime) -> None:
    """Merge what the event says about its customer into the row (locked: ``_lock_customers``)."""
    c = event.customer
    assert c is not None
    row.email = c.email
    row.name = c.name or row.name
    row.timezone = c.timezone if c.timezone != "UTC" or not row.timezone else row.timezone
    row.locale = c.locale or row.locale
    if c.attributes:
        row.attributes = {**(row.attributes or {}), **c.attributes}
    row.updated_at = now


def _record_purchases(session: Session, event: Event) -> None:
    assert event.customer is not None
    skus = {str(item.get("sku")) for item in event.data.get("items") or []
            if isinstance(item, dict) and item.get("sku")}
    insert_ignore(session, Purchase, [
        {"event_id": event.id, "customer_id": event.customer.id, "sku": sku,
         "purchased_at": event.occurred_at} for sku in sorted(skus)], ["event_id", "sku"])


def _count_ticket(session: Session, event: Event, now: datetime, result: IngestResult) -> None:
    if event.customer is None:
        return
    row = session.get(CustomerRow, event.customer.id)
    if event.type == "ticket.opened":
        row.open_tickets += 1
        return
    row.open_tickets = max(0, row.open_tickets - 1)
    if row.open_tickets == 0:  # held marketing may go again: wake it now
        for run in session.scalars(select(Run).where(Run.customer_id == row.id,
                                                     Run.status == RunStatus.held.value)):
            run.status = RunStatus.active.value
            run.next_run_at = now
            result.customers.add(row.id)


def suppress(session: Session, email: str, reason: str, *, source: str | None, now: datetime,
             scope: str = "marketing") -> None:
    insert_ignore(session, Suppression, [{"email_hash": email_hash(email), "reason": reason,
                                          "scope": scope, "source": source, "created_at": now}],
                  ["email_hash"])


def _store_answers(session: Session, event: Event, now: datetime) -> None:
    assert event.customer is not None
    survey, answers = str(event.data["survey"]), dict(event.data["answers"])
    journey_id = event.data.get("journey")
    message_id = event.data.get("message_id")
    existing = session.scalars(select(SurveyResponse).where(
        SurveyResponse.customer_id == event.customer.id, SurveyResponse.survey == survey,
        SurveyResponse.message_id == message_id if message_id else SurveyResponse.message_id.is_(None))).first()
    if existing:  # answering twice updates, never duplicates
        existing.answers = {**existing.answers, **answers}
        existing.status, existing.updated_at, existing.event_id = "final", now, event.id
    else:
        session.add(SurveyResponse(message_id=message_id, run_id=event.data.get("run_id"),
                                   customer_id=event.customer.id, journey_id=journey_id, survey=survey,
                                   answers=answers, status="final", event_id=event.id,
                                   created_at=now, updated_at=now))
    query = select(Run).where(Run.customer_id == event.customer.id, Run.status.in_(UNFINISHED))
    if journey_id:
        query = query.where(Run.journey_id == journey_id)
    for run in session.scalars(query):
        ctx = dict(run.context or {})
        merged = {**(ctx.get("answers") or {})}
        merged[survey] = {**merged.get(survey, {}), **answers}
        ctx["answers"] = merged
        run.context = ctx
    session.flush()


def _unfinished_runs(session: Session, customer_id: str) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.customer_id == customer_id,
                                                  Run.status.in_(UNFINISHED))))


def _exit_runs(session: Session, ctx: Context, event: Event, runs: list[Run], now: datetime) -> None:
    for run in runs:
        journey = ctx.versions.journey(run.version_id)
        if journey is None or event.type not in journey.exit_when:
            continue
        if aware(run.entered_at) > event.occurred_at:
            continue
        end_run(session, run, now, f"exit_when {event.type}")


def end_run(session: Session, run: Run, now: datetime, reason: str, *, status: str = "exited") -> None:
    run.status, run.next_run_at, run.ended_at, run.exit_reason = status, None, now, reason
    run.waiting_for, run.updated_at = None, now
    session.add(Timeline(at=now, customer_id=run.customer_id, journey_id=run.journey_id, run_id=run.id,
                         step_id=run.step_id, action="exited", reason=reason))


def _wake_waiting(event: Event, runs: list[Run], now: datetime, result: IngestResult) -> None:
    for run in runs:
        if run.status != RunStatus.waiting.value or run.waiting_for != event.type:
            continue   # not waiting for this, or just ended by it (exit_when)
        run_ctx = dict(run.context or {})
        run_ctx["wake_event"] = event.scope()
        run.context = run_ctx
        run.status, run.next_run_at, run.updated_at = RunStatus.active.value, now, now
        result.customers.add(run.customer_id)


# ---------------------------------------------------------------- starting runs

def _start_triggered(session: Session, ctx: Context, event: Event, now: datetime, result: IngestResult) -> None:
    journeys = [j for j in ctx.catalog.journeys.values() if j.trigger.event == event.type]
    if not journeys:
        return
    for customer in _audience(session, event):
        scope = {"customer": customer, "event": event.scope(), "data": event.data, "now": now,
                 "answers": Answers(), "waited": None}
        for journey in journeys:
            if journey.trigger.condition:
                try:
                    if not truthy(journey.trigger.condition, {**scope, "journey": _journey_scope(journey)}):
                        continue
                except ExpressionError as exc:
                    session.add(Timeline(at=now, customer_id=customer["id"], journey_id=journey.id,
                                         action="skipped", reason=f"trigger condition failed: {exc}"))
                    continue
            run_id = enroll(session, ctx, journey, customer["id"], trigger=event.scope(), answers={},
                            key=f"{event.id}/{journey.id}/{customer['id']}", now=now,
                            trigger_event_id=event.id)
            if run_id:
                result.entered.append(run_id)
                result.customers.add(customer["id"])


def _audience(session: Session, event: Event) -> list[dict[str, Any]]:
    """The customers an event concerns: its own, or every purchaser of an incident's SKUs."""
    if not event.is_broadcast:
        assert event.customer is not None
        return [event.customer.scope()]
    query = select(Purchase.customer_id).where(Purchase.sku.in_(event.data["skus"]))
    if event.data.get("purchased_after"):
        query = query.where(Purchase.purchased_at >= parse_timestamp(event.data["purchased_after"]))
    if event.data.get("purchased_before"):
        query = query.where(Purchase.purchased_at <= parse_timestamp(event.data["purchased_before"]))
    ids = sorted(set(session.scalars(query.distinct())))
    # each customer's lock is held while its runs are decided (in key order: see the docstring)
    rows = session.scalars(select(CustomerRow).where(CustomerRow.id.in_(ids), CustomerRow.email.is_not(None))
                           .order_by(CustomerRow.id).with_for_update())
    return [customer_scope(row) for row in rows]


def customer_scope(row: CustomerRow) -> dict[str, Any]:
    return {"id": row.id, "email": row.email, "name": row.name, "timezone": row.timezone,
            "locale": row.locale, "attributes": dict(row.attributes or {})}


def _journey_scope(journey: Journey) -> dict[str, str]:
    return {"id": journey.id, "name": journey.name, "touchpoint": journey.touchpoint.value,
            "category": journey.category.value}


def enroll(session: Session, ctx: Context, journey: Journey, customer_id: str, *, trigger: dict[str, Any],
           answers: dict[str, Any], key: str, now: datetime, trigger_event_id: str | None = None,
           reason: str | None = None) -> str | None:
    """Start a run unless the reentry rules say no; returns the new run id.

    The run id derives from what started it (event × journey × customer, or parent run × step), so
    the same cause can never start two runs. The caller holds the customer's row lock (ingest
    and dispatch both do), so the reentry rules read runs no one else is deciding about.
    """
    version_id = ctx.versions.current_id(journey.id)
    if version_id is None:
        return None
    previous = list(session.execute(
        select(Run.status, Run.entered_at).where(Run.customer_id == customer_id, Run.journey_id == journey.id)))
    mode = journey.reentry.mode
    if mode != "always" and any(status in UNFINISHED for status, _ in previous):
        return None  # one active run per journey
    if mode == "never" and previous:
        return None
    if mode == "after" and previous:
        last = max(aware(at) for _, at in previous)
        if now < last + journey.reentry.after:
            return None
    run_id = uuid.uuid5(_RUN_NS, key).hex
    from postsale.engine.types import RunState
    state = RunState(run_id=run_id, journey_id=journey.id, customer_id=customer_id, entered_at=now,
                     next_run_at=now, trigger=trigger, answers=answers)
    inserted = insert_ignore(session, Run, [{
        "id": run_id, "customer_id": customer_id, "journey_id": journey.id, "version_id": version_id,
        "touchpoint": journey.touchpoint.value, "category": journey.category.value,
        "status": RunStatus.active.value, "step_index": 0, "next_run_at": now, "entered_at": now,
        "trigger_event_id": trigger_event_id, "context": context_of(state), "updated_at": now}], ["id"])
    if not inserted:
        return None
    session.add(Timeline(at=now, customer_id=customer_id, journey_id=journey.id, run_id=run_id,
                         action="entered", reason=reason))
    session.flush()
    return run_id


__all__ = ["IngestResult", "ingest_text", "ingest_items", "ingest_events", "enroll", "end_run",
           "suppress", "customer_scope", "to_state", "UNFINISHED"]

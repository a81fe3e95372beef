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

Once it holds the locks, a batch reads its customers and their runs once, decides every event
against that in-memory view (``postsale.store.ingest_state``: a run one event starts is what
the next event of the batch sees) and writes runs, timeline, purchases and customers in bulk at
the end. ``enroll`` and ``end_run`` are the same rules for a caller holding ORM rows (dispatch).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from models import Customer as CustomerRow
from models import Purchase, Run, Suppression, SurveyResponse, Timeline
from postsale.engine.types import RunState, RunStatus
from postsale.errors import ExpressionError
from postsale.events import (SUPPRESSING_TYPES, Event, Rejected, decode_batch, parse_batch,
                             parse_timestamp)
from postsale.sandbox import Answers, truthy
from postsale.spec.model import Journey
from postsale.store.context import Context
from postsale.store.gcpause import gc_paused
from postsale.store.ingest_state import TIMELINE_ROW, UNFINISHED, BatchState, timeline
from postsale.store.runs import aware, context_of, to_state
from postsale.store.sql import email_hash, insert_ignore, is_retryable

log = logging.getLogger("postsale.ingest")

_RUN_NS = uuid.UUID("6f1c1a43-4a0e-4d1b-9a1e-5d3b2c0f7e11")
_RUN_NS_BYTES = _RUN_NS.bytes
ATTEMPTS = 3   # a batch PostgreSQL aborted to break a deadlock is tried again, whole
AUDIENCE_CHUNK = 10_000   # customers an incident's audience query locks at a time


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
    with gc_paused():
        good, bad = parse_batch(items)
        result = ingest_events(ctx, [event for _, event in good])
    result.rejected = bad + result.rejected
    return result


def ingest_events(ctx: Context, events: Iterable[Event]) -> IngestResult:
    """Store and apply validated events, in the order given, in one transaction."""
    events = list(events)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with gc_paused():   # see postsale.store.gcpause
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
        state = BatchState(session, now)
        new = _store(state, events, now)
        fresh = [e for e in events if e.id in new]
        _lock_customers(state, fresh, now)
        batch = _Batch(ctx, state, result)
        state.load_runs(state.customers)
        state.check_run_ids(batch.run_ids(fresh))
        for event in events:
            if event.id not in new:
                result.duplicates.append(event.id)
                continue
            new.discard(event.id)   # the same id twice in one batch: the second is a duplicate
            result.accepted.append(event.id)
            batch.apply(event)
        state.flush()
        session.commit()
    return result


def _store(state: BatchState, events: list[Event], now: datetime) -> set[str]:
    """Insert the events (key order); the ids that were new to the database."""
    rows: dict[str, tuple] = {}
    for event in events:
        if event.id not in rows:
            c = event.customer
            rows[event.id] = (event.id, event.type, event.occurred_at, now, c.id if c else None, event.data,
                              c.scope() if c else None)
    return state.store_events([rows[key] for key in sorted(rows)])


def _lock_customers(state: BatchState, events: list[Event], now: datetime) -> None:
    """Create the customers that are new, lock every customer of the batch until commit, read them."""
    first: dict[str, tuple] = {}
    for event in events:
        c = event.customer
        if c is not None and c.id not in first:
            first[c.id] = (c.id, c.email, c.name, c.timezone, c.locale, dict(c.attributes), 0, now, now)
    state.lock_customers([first[key] for key in sorted(first)])


# ---------------------------------------------------------------- effects of one event

class _Batch:
    """Applies a batch's events, in order, to its ``BatchState``."""

    def __init__(self, ctx: Context, state: BatchState, result: IngestResult) -> None:
        self.ctx, self.state, self.result, self.now = ctx, state, result, state.now
        self.triggers: dict[str, list[Journey]] = defaultdict(list)
        for journey in ctx.catalog.journeys.values():
            self.triggers[journey.trigger.event].append(journey)
        self._run_ids: dict[str, str] = {}   # by key: uuid5 computed once

    def run_ids(self, events: list[Event]) -> list[str]:
        """The runs these events could start (an incident's audience is only known later)."""
        return [self._run_id(f"{event.id}/{journey.id}/{event.customer.id}") for event in events
                if event.customer is not None and not event.is_broadcast
                for journey in self.triggers.get(event.type, ())]

    def _run_id(self, key: str) -> str:
        run_id = self._run_ids.get(key)
        if run_id is None:
            run_id = self._run_ids[key] = _run_id(key)
        return run_id

    def apply(self, event: Event) -> None:
        state, result = self.state, self.result
        if event.customer is not None:
            _merge_customer(state.customers[event.customer.id], event)
            result.customers.add(event.customer.id)
        if event.type == "order.placed":
            state.add_purchases(_purchases(event))
        elif event.type in ("ticket.opened", "ticket.resolved"):
            self._count_ticket(event)
        elif event.type in SUPPRESSING_TYPES and event.customer is not None:
            state.add_suppression(_suppression(event.customer.email, SUPPRESSING_TYPES[event.type],
                                               source=event.id, now=self.now))
        elif event.type == "survey.answered" and event.customer is not None:
            self._store_answers(event)
        if event.is_broadcast:
            self._apply_broadcast(event)
            return
        assert event.customer is not None   # parse_event requires one but for incidents
        unfinished = state.unfinished(event.customer.id)
        if unfinished:
            self._exit_runs(event, unfinished)
            self._wake_waiting(event, unfinished)
        self._start_triggered(event, [event.customer.scope()])

    def _apply_broadcast(self, event: Event) -> None:
        """An incident: its own customer's runs if it names one, else the runs of every purchaser
        of its SKUs that it ends or wakes; and every purchaser enrolled where it triggers a journey.

        The audience is worked on a chunk at a time (``_audience``: locked in key order, its runs
        read), each chunk written and forgotten before the next, so that a hundred thousand
        purchasers never sit in memory at once; all in the batch's one transaction. The timeline
        rows of the runs started are written after the whole audience's exits, the order one pass
        over the whole audience gives.
        """
        state = self.state
        if event.customer is not None:
            own = state.unfinished(event.customer.id)
            self._exit_runs(event, own)
            self._wake_waiting(event, own)
        journeys = self.triggers.get(event.type)
        started: list[tuple] = []   # their timeline rows, as tuples (a third of a dict's memory)
        for audience in self._audience(event):
            if event.customer is None:   # incident.resolved: every affected customer waiting for it
                concerned = [run for c in audience for run in state.unfinished(c["id"]) if self._concerns(run, event)]
                unfinished = [run for run in state.contexts(concerned) if _same_incident(run, event)]
                self._exit_runs(event, unfinished)
                self._wake_waiting(event, unfinished)
            if journeys:
                self._start_triggered(event, audience, add_timeline=lambda row: started.append(TIMELINE_ROW(row)))
            state.flush()
            state.forget(c["id"] for c in audience)
            for journey in journeys or ():
                for c in audience:
                    self._run_ids.pop(f"{event.id}/{journey.id}/{c['id']}", None)
        state.insert_timeline(started)

    def _concerns(self, run: dict[str, Any], event: Event) -> bool:
        """Whether the event can end or wake the run (what ``_exit_runs`` and ``_wake_waiting`` act on)."""
        if run["status"] == RunStatus.waiting.value and run["waiting_for"] == event.type:
            return True
        journey = self.ctx.versions.journey(run["version_id"])
        return journey is not None and event.type in journey.exit_when

    def _count_ticket(self, event: Event) -> None:
        if event.customer is None:
            return
        row = self.state.customers[event.customer.id]
        if event.type == "ticket.opened":
            row["open_tickets"] += 1
            return
        row["open_tickets"] = max(0, row["open_tickets"] - 1)
        if row["open_tickets"] == 0:  # held marketing may go again: wake it now
            for run in self.state.unfinished(row["id"]):
                if run["status"] == RunStatus.held.value:
                    run["status"], run["next_run_at"] = RunStatus.active.value, self.now
                    self.state.changed(run, "status", "next_run_at")
                    self.result.customers.add(row["id"])

    def _store_answers(self, event: Event) -> None:
        assert event.customer is not None
        session, now = self.state.session, self.now
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
        runs = [run for run in self.state.unfinished(event.customer.id)
                if not journey_id or run["journey_id"] == journey_id]
        for run in self.state.contexts(runs):
            run_ctx = dict(run["context"] or {})
            merged = {**(run_ctx.get("answers") or {})}
            merged[survey] = {**merged.get(survey, {}), **answers}
            run_ctx["answers"] = merged
            run["context"] = run_ctx
            self.state.changed(run, "context")

    def _exit_runs(self, event: Event, runs: list[dict[str, Any]]) -> None:
        for run in runs:
            journey = self.ctx.versions.journey(run["version_id"])
            if journey is None or event.type not in journey.exit_when:
                continue
            if run["entered_at"] > event.occurred_at:
                continue
            reason = f"exit_when {event.type}"
            ended = {"status": "exited", "next_run_at": None, "ended_at": self.now, "exit_reason": reason,
                     "waiting_for": None, "updated_at": self.now}
            run.update(ended)
            self.state.changed(run, *ended)
            self.state.add_timeline(timeline(self.now, run["customer_id"], run["journey_id"], "exited",
                                             run_id=run["id"], step_id=run["step_id"], reason=reason))

    def _wake_waiting(self, event: Event, runs: list[dict[str, Any]]) -> None:
        for run in runs:
            if run["status"] != RunStatus.waiting.value or run["waiting_for"] != event.type:
                continue   # not waiting for this, or just ended by it (exit_when)
            self.state.contexts([run])
            run["context"] = {**(run["context"] or {}), "wake_event": event.scope()}
            run["status"], run["next_run_at"], run["updated_at"] = RunStatus.active.value, self.now, self.now
            self.state.changed(run, "context", "status", "next_run_at", "updated_at")
            self.result.customers.add(run["customer_id"])

    # ------------------------------------------------------------ starting runs

    def _start_triggered(self, event: Event, audience: list[dict[str, Any]],
                         add_timeline: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Enroll the audience (customer scopes) where the event triggers a journey; the timeline
        rows go to ``add_timeline`` (the batch's by default)."""
        journeys = self.triggers.get(event.type)
        if not journeys:
            return
        add_timeline = add_timeline or self.state.add_timeline
        if event.is_broadcast:
            self.state.check_run_ids(self._run_id(f"{event.id}/{journey.id}/{c['id']}")
                                     for c in audience for journey in journeys)
        now = self.now
        trigger = event.scope()   # what every run it starts keeps (none changes it in place)
        for customer in audience:
            scope = None
            for journey in journeys:
                if journey.trigger.condition:
                    if scope is None:
                        scope = {"customer": customer, "event": trigger, "data": event.data, "now": now,
                                 "answers": Answers(), "waited": None}
                    try:
                        if not truthy(journey.trigger.condition, {**scope, "journey": _journey_scope(journey)}):
                            continue
                    except ExpressionError as exc:
                        add_timeline(timeline(now, customer["id"], journey.id, "skipped",
                                              reason=f"trigger condition failed: {exc}"))
                        continue
                run_id = self._enter(journey, customer["id"], trigger=trigger,
                                     key=f"{event.id}/{journey.id}/{customer['id']}", trigger_event_id=event.id,
                                     add_timeline=add_timeline)
                if run_id:
                    self.result.entered.append(run_id)
                    self.result.customers.add(customer["id"])

    def _enter(self, journey: Journey, customer_id: str, *, trigger: dict[str, Any], key: str,
               trigger_event_id: str, add_timeline: Callable[[dict[str, Any]], None]) -> str | None:
        """``enroll`` against the batch's view of the customer's runs."""
        version_id = self.ctx.versions.current_id(journey.id)
        if version_id is None or not may_enter(journey, self.state.previous(customer_id, journey.id), self.now):
            return None
        run_id = self._run_id(key)
        if run_id in self.state.taken:
            return None
        self.state.add_run(_new_run(journey, version_id, customer_id, run_id, trigger=trigger, answers={},
                                    now=self.now, trigger_event_id=trigger_event_id))
        add_timeline(timeline(self.now, customer_id, journey.id, "entered", run_id=run_id))
        return run_id

    def _audience(self, event: Event) -> Iterator[list[dict[str, Any]]]:
        """Every purchaser of an incident's SKUs (customer scopes), in chunks of ``AUDIENCE_CHUNK``
        in key order, each chunk locked and its runs read before it is yielded."""
        state = self.state
        state.flush()   # the purchases and customers this batch wrote so far are part of the audience
        query = select(Purchase.customer_id).where(Purchase.sku.in_(event.data["skus"]))
        if event.data.get("purchased_after"):
            query = query.where(Purchase.purchased_at >= parse_timestamp(event.data["purchased_after"]))
        if event.data.get("purchased_before"):
            query = query.where(Purchase.purchased_at <= parse_timestamp(event.data["purchased_before"]))
        ids = sorted(set(state.session.scalars(query.distinct())))
        # each customer's lock is held while its runs are decided (in key order: see the docstring)
        table = CustomerRow.__table__
        # In sorted chunks: key order is kept across them, and PostgreSQL takes at most 65,535
        # parameters a statement (an incident can reach a hundred thousand purchasers).
        for start in range(0, len(ids), AUDIENCE_CHUNK):
            rows = state.session.execute(select(table).where(table.c.id.in_(ids[start:start + AUDIENCE_CHUNK]),
                                                             table.c.email.is_not(None))
                                         .order_by(table.c.id).with_for_update())
            audience = [customer_scope(row) for row in rows]
            state.load_runs(c["id"] for c in audience)
            yield audience


def _merge_customer(row: dict[str, Any], event: Event) -> None:
    """Merge what the event says about its customer into the row (locked: ``_lock_customers``)."""
    c = event.customer
    assert c is not None
    row["email"] = c.email
    row["name"] = c.name or row["name"]
    row["timezone"] = c.timezone if c.timezone != "UTC" or not row["timezone"] else row["timezone"]
    row["locale"] = c.locale or row["locale"]
    if c.attributes:
        row["attributes"] = {**(row["attributes"] or {}), **c.attributes}


def _purchases(event: Event) -> list[dict[str, Any]]:
    assert event.customer is not None
    skus = {str(item.get("sku")) for item in event.data.get("items") or []
            if isinstance(item, dict) and item.get("sku")}
    return [{"event_id": event.id, "customer_id": event.customer.id, "sku": sku,
             "purchased_at": event.occurred_at} for sku in sorted(skus)]


def _same_incident(run: dict[str, Any], event: Event) -> bool:
    """A resolution concerns the runs its own incident started (when both name one)."""
    started_by = ((run["context"] or {}).get("trigger") or {}).get("data") or {}
    theirs, ours = started_by.get("incident_id"), event.data.get("incident_id")
    return theirs is None or ours is None or theirs == ours


def _suppression(email: str, reason: str, *, source: str | None, now: datetime,
                 scope: str = "marketing") -> dict[str, Any]:
    return {"email_hash": email_hash(email), "reason": reason, "scope": scope, "source": source, "created_at": now}


def suppress(session: Session, email: str, reason: str, *, source: str | None, now: datetime,
             scope: str = "marketing") -> None:
    insert_ignore(session, Suppression, [_suppression(email, reason, source=source, now=now, scope=scope)],
                  ["email_hash"])


def customer_scope(row: Any) -> dict[str, Any]:
    """The ``customer`` name of expressions, from a customer row (ORM or Core)."""
    return {"id": row.id, "email": row.email, "name": row.name, "timezone": row.timezone,
            "locale": row.locale, "attributes": dict(row.attributes or {})}


def _journey_scope(journey: Journey) -> dict[str, str]:
    return {"id": journey.id, "name": journey.name, "touchpoint": journey.touchpoint.value,
            "category": journey.category.value}


# ---------------------------------------------------------------- the reentry rules, for every caller

def may_enter(journey: Journey, previous: list[tuple[str, datetime]], now: datetime) -> bool:
    """Whether the reentry rules let a customer with these (status, entered_at) runs of the
    journey start another."""
    mode = journey.reentry.mode
    if mode != "always" and any(status in UNFINISHED for status, _ in previous):
        return False  # one active run per journey
    if mode == "never" and previous:
        return False
    if mode == "after" and previous:
        last = max(aware(at) for _, at in previous)
        if now < last + journey.reentry.after:
            return False
    return True


def _run_id(key: str) -> str:
    """``uuid.uuid5(_RUN_NS, key).hex``, without building the UUID object (a run id an event)."""
    digest = bytearray(hashlib.sha1(_RUN_NS_BYTES + key.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50   # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80   # RFC 4122 variant
    return digest.hex()


def _new_run(journey: Journey, version_id: int, customer_id: str, run_id: str, *, trigger: dict[str, Any],
             answers: dict[str, Any], now: datetime, trigger_event_id: str | None) -> dict[str, Any]:
    return {"id": run_id, "customer_id": customer_id, "journey_id": journey.id, "version_id": version_id,
            "touchpoint": journey.touchpoint.value, "category": journey.category.value,
            "status": RunStatus.active.value, "step_index": 0, "step_id": None, "next_run_at": now,
            "entered_at": now, "ended_at": None, "exit_reason": None, "waiting_for": None,
            "trigger_event_id": trigger_event_id, "context": {**_NEW_CONTEXT, "trigger": trigger, "answers": answers},
            "updated_at": now}


# the context of a run that has just entered, but its trigger and answers
_NEW_CONTEXT = context_of(RunState(run_id="", journey_id="", customer_id="", entered_at=datetime.min))


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
    if not may_enter(journey, [(status, at) for status, at in previous], now):
        return None
    run_id = _run_id(key)
    inserted = insert_ignore(session, Run, [_new_run(journey, version_id, customer_id, run_id, trigger=trigger,
                                                     answers=answers, now=now, trigger_event_id=trigger_event_id)],
                             ["id"])
    if not inserted:
        return None
    session.add(Timeline(at=now, customer_id=customer_id, journey_id=journey.id, run_id=run_id,
                         action="entered", reason=reason))
    session.flush()
    return run_id


def end_run(session: Session, run: Run, now: datetime, reason: str, *, status: str = "exited") -> None:
    run.status, run.next_run_at, run.ended_at, run.exit_reason = status, None, now, reason
    run.waiting_for, run.updated_at = None, now
    session.add(Timeline(at=now, customer_id=run.customer_id, journey_id=run.journey_id, run_id=run.id,
                         step_id=run.step_id, action="exited", reason=reason))


__all__ = ["IngestResult", "ingest_text", "ingest_items", "ingest_events", "enroll", "end_run", "may_enter",
           "suppress", "customer_scope", "to_state", "UNFINISHED"]

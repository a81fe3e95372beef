"""Dispatch: claim due customers in batches, advance their runs, write the outbox.

A batch is one transaction: evaluate each customer's due runs (priority order, caps against the
customer's send log), write every decision to the timeline, move the pointers, set
``next_run_at`` and insert one outbox row per send, keyed (run, step) so that no step can ever
queue two emails (the transactional outbox: guarantee 2). Delivery reads the outbox later.

Any number of dispatchers may run at once on PostgreSQL (guarantee 3). A batch claims
*customers*, not runs: ``SELECT ... FROM customers ... FOR UPDATE SKIP LOCKED`` locks up to
``batch_size`` customers with a due run that no other transaction holds, and only then reads
their due runs, send log, suppressions and exit events. So every journey of a customer is
decided in one transaction against the complete log, and caps and min_gap hold however many
dispatchers run; the outbox key stays the backstop. A dispatcher that finds every due
customer held by others stops; a dispatcher killed mid-batch loses nothing (its transaction
rolls back and releases the locks). Ingest takes the same customer lock (see ``ingest``).
SQLite has one writer and takes the simple path: the earliest due customers first.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from sqlalchemy import func, select
from sqlmodel import Session

from models import Customer as CustomerRow
from models import Event as EventRow
from models import Message, Run, Suppression
from postsale.engine import advance_customer, program_for
from postsale.engine.types import (Alerted, CustomerState, Exited, Held, RunState, RunStatus, Sent,
                                   SentRecord, Skipped, StartJourney, Suppressed)
from postsale.events import Customer
from postsale.spec.model import Category, Journey, Policy, WaitFor
from postsale.store.context import Context
from postsale.store.ingest import UNFINISHED, end_run, enroll
from postsale.store.runs import apply_state, aware, timeline_row, to_state
from postsale.store.sql import email_hash, insert_ignore

log = logging.getLogger("postsale.dispatch")

MAX_ROUNDS = 3   # batches one customer may take within one dispatch


@dataclass
class DispatchReport:
    customers: int = 0
    runs: int = 0
    batches: int = 0
    actions: Counter = field(default_factory=Counter)
    by_journey: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    skip_reasons: Counter = field(default_factory=Counter)
    notices: list[tuple[str, str]] = field(default_factory=list)   # (level, line) for logs

    def count(self, journey_id: str, action: str) -> None:
        self.actions[action] += 1
        self.by_journey[journey_id][action] += 1

    def to_json(self) -> dict[str, Any]:
        return {"customers": self.customers, "runs": self.runs, "batches": self.batches,
                "actions": dict(self.actions),
                "by_journey": {k: dict(v) for k, v in sorted(self.by_journey.items())}}


def history_window(policy: Policy) -> timedelta:
    caps = [c for c in (policy.marketing_cap, policy.journey_cap, policy.survey_cap) if c]
    spans = [c.per for c in caps] + [c.min_gap for c in caps if c.min_gap]
    return max(spans, default=timedelta(days=1))


def dispatch(ctx: Context, *, customer_ids: Iterable[str] | None = None, max_batches: int | None = None,
             on_batch: Callable[[DispatchReport], None] | None = None) -> DispatchReport:
    """Advance every due customer (or only ``customer_ids``) once, in batches.

    ``on_batch`` is called with the running report after each batch commits.
    """
    report = DispatchReport()
    now = ctx.clock.now()
    only = sorted(set(customer_ids)) if customer_ids is not None else None
    rounds: Counter = Counter()
    while max_batches is None or report.batches < max_batches:
        with Session(ctx.engine) as session:
            # a run that stays due within one dispatch must not spin it forever
            exhausted = [c for c, n in rounds.items() if n >= MAX_ROUNDS]
            batch = claim(session, now, ctx.batch_size, only=only, exclude=exhausted)
            if not batch:
                break
            rounds.update(batch)
            _dispatch_batch(session, ctx, batch, now, report)
            session.commit()
        report.batches += 1
        if on_batch is not None:
            on_batch(report)
    return report


def claim(session: Session, now: datetime, limit: int, *, only: list[str] | None = None,
          exclude: list[str] | None = None) -> list[str]:
    """Up to ``limit`` customers with a run due at ``now``, theirs until the transaction ends.

    PostgreSQL locks the customers' rows, skipping those another transaction holds (another
    dispatcher's batch, an ingest of their events), in key order: the query stops at ``limit``
    instead of sorting every due customer. SQLite, one writer, takes the earliest due first.
    """
    due = select(Run.customer_id).where(Run.next_run_at <= now, Run.status.in_(UNFINISHED))
    if only is not None:
        due = due.where(Run.customer_id.in_(only))
    if exclude:
        due = due.where(Run.customer_id.not_in(exclude))
    if session.get_bind().dialect.name == "postgresql":
        return sorted(session.scalars(select(CustomerRow.id).where(CustomerRow.id.in_(due)).limit(limit)
                                      .with_for_update(skip_locked=True)))
    earliest = (due.add_columns(func.min(Run.next_run_at).label("due")).group_by(Run.customer_id)
                .order_by("due").limit(limit))
    return [row.customer_id for row in session.execute(earliest)]


def _dispatch_batch(session: Session, ctx: Context, customer_ids: list[str], now: datetime,
                    report: DispatchReport) -> None:
    policy = ctx.policy
    runs_by_customer: dict[str, list[Run]] = defaultdict(list)
    for run in session.scalars(select(Run).where(Run.customer_id.in_(customer_ids), Run.next_run_at <= now,
                                                 Run.status.in_(UNFINISHED))):
        runs_by_customer[run.customer_id].append(run)
    customers = {row.id: row for row in session.scalars(select(CustomerRow).where(CustomerRow.id.in_(customer_ids)))}
    history = _history(session, customer_ids, now - history_window(policy))
    suppressed = _suppressions(session, [c.email for c in customers.values() if c.email])
    exit_events = _exit_events(session, ctx, customer_ids)
    outbox: list[dict[str, Any]] = []   # one multi-row insert a batch
    for customer_id in customer_ids:
        runs = runs_by_customer.get(customer_id, [])
        row = customers.get(customer_id)
        if not runs:
            continue
        report.customers += 1
        reason, scope = suppressed.get(email_hash(row.email), (None, None)) if row and row.email else (None, None)
        if row is None or not row.email or scope == "all":  # forgotten: nothing more is sent to this person
            for run in runs:
                end_run(session, run, now, "customer forgotten")
                report.count(run.journey_id, "exited")
            continue
        items: list[tuple[RunState, Journey]] = []
        rows_by_id = {}
        for run in runs:
            journey = _journey_for(ctx, run)
            if journey is None:
                end_run(session, run, now, "journey removed")
                report.count(run.journey_id, "exited")
                continue
            items.append((to_state(run), journey))
            rows_by_id[run.id] = (run, journey)
        state = CustomerState(
            customer=Customer(id=row.id, email=row.email, name=row.name, timezone=row.timezone or "UTC",
                              locale=row.locale, attributes=dict(row.attributes or {})),
            history=tuple(history.get(customer_id, ())),
            suppressed=reason,
            ticket_open=row.open_tickets > 0,
            exit_events=tuple(exit_events.get(customer_id, ())))
        results = advance_customer(items, state, policy, now, ctx.renderer)
        for result in results:
            run, journey = rows_by_id[result.run.run_id]
            _apply_result(session, ctx, run, journey, result, state.customer, now, report, outbox)
        report.runs += len(results)
    insert_ignore(session, Message, outbox, ["run_id", "step_id"])


def _journey_for(ctx: Context, run: Run) -> Journey | None:
    """The version the run entered with, unless its journey file was removed."""
    if ctx.versions.current_id(run.journey_id) is None:
        return None
    return ctx.versions.journey(run.version_id)


def _history(session: Session, customer_ids: list[str], since: datetime) -> dict[str, list[SentRecord]]:
    out: dict[str, list[SentRecord]] = defaultdict(list)
    rows = session.execute(select(Message.customer_id, Message.created_at, Message.journey_id,
                                  Message.category, Message.is_survey)
                           .where(Message.customer_id.in_(customer_ids), Message.created_at >= since,
                                  Message.category.in_(("marketing", "transactional")),
                                  Message.status != "failed"))
    for cid, at, journey_id, category, is_survey in rows:
        out[cid].append(SentRecord(aware(at), journey_id, Category(category), bool(is_survey)))
    return out


def _suppressions(session: Session, emails: list[str]) -> dict[str, tuple[str, str]]:
    """(reason, scope) by address hash: scope ``all`` (forgotten) stops every email."""
    hashes = [email_hash(e) for e in emails]
    if not hashes:
        return {}
    rows = session.execute(select(Suppression.email_hash, Suppression.reason, Suppression.scope)
                           .where(Suppression.email_hash.in_(hashes)))
    return {h: (reason, scope) for h, reason, scope in rows}


def _exit_events(session: Session, ctx: Context, customer_ids: list[str]) -> dict[str, list[tuple[str, datetime]]]:
    types = sorted({t for j in ctx.catalog.journeys.values() for t in j.exit_when})
    out: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    if not types:
        return out
    for cid, etype, at in session.execute(select(EventRow.customer_id, EventRow.type, EventRow.occurred_at)
                                          .where(EventRow.customer_id.in_(customer_ids), EventRow.type.in_(types))):
        out[cid].append((etype, aware(at)))
    return out


def _apply_result(session: Session, ctx: Context, run: Run, journey: Journey, result, customer: Customer,
                  now: datetime, report: DispatchReport, outbox: list[dict[str, Any]]) -> None:
    exit_reason = None
    for outcome in result.outcomes:
        if isinstance(outcome, StartJourney):
            target = ctx.catalog.journeys.get(outcome.journey_id)
            if target is not None:
                enroll(session, ctx, target, run.customer_id, trigger=result.run.trigger,
                       answers=dict(result.run.answers), key=f"{run.id}/{outcome.step_id}/{target.id}",
                       now=now, trigger_event_id=run.trigger_event_id)
                report.count(target.id, "entered")
            continue
        session.add(timeline_row(outcome, at=now, run=run))
        report.count(journey.id, outcome.action)
        if isinstance(outcome, Sent):
            outbox.append(_message(ctx, run, journey, outcome, customer, now))
        elif isinstance(outcome, (Skipped, Suppressed)):
            report.skip_reasons[outcome.reason] += 1
            report.notices.append(("info", f"{customer.id} {journey.id}/{outcome.step_id} {outcome.action}: {outcome.reason}"))
        elif isinstance(outcome, Held):
            report.notices.append(("info", f"{customer.id} {journey.id}/{outcome.step_id} held: {outcome.reason}"))
        elif isinstance(outcome, Alerted):
            report.notices.append(("warning", f"ALERT {journey.id}: {outcome.message}"))
            log.warning("alert from %s for %s: %s", journey.id, customer.id, outcome.message)
            if ctx.policy.ops_email:
                outbox.append(_ops_alert(ctx, run, journey, outcome, now))
        elif isinstance(outcome, Exited):
            exit_reason = outcome.reason
    step = _step_at(journey, result.run.step_index)
    apply_state(run, result.run, step_id=step.id if step else None, now=now, exit_reason=exit_reason)
    if result.run.status is RunStatus.waiting and isinstance(step, WaitFor):
        run.waiting_for = step.event


def _step_at(journey: Journey, index: int):
    return program_for(journey).step_at(index)


def _message(ctx: Context, run: Run, journey: Journey, sent: Sent, customer: Customer,
             now: datetime) -> dict[str, Any]:
    """The outbox row of a send, keyed (run, step): inserted with the batch, at most once."""
    policy = ctx.policy
    sender = policy.sender.transactional_from if (sent.category is Category.transactional
                                                  and policy.sender.transactional_from) else policy.sender.from_
    return {
        "id": sent.message_id, "run_id": run.id, "step_id": sent.step_id, "customer_id": customer.id,
        "journey_id": journey.id, "touchpoint": journey.touchpoint.value, "category": sent.category.value,
        "is_survey": sent.is_survey, "survey_id": sent.survey_id, "template": sent.template,
        "to_email": customer.email, "to_name": customer.name, "from_email": sender,
        "reply_to": policy.sender.reply_to, "subject": sent.email.subject, "html": sent.email.html,
        "text_body": sent.email.text, "headers": dict(sent.email.headers), "status": "queued",
        "created_at": now}


def _ops_alert(ctx: Context, run: Run, journey: Journey, alert: Alerted, now: datetime) -> dict[str, Any]:
    """An operator notice to ``policy.ops_email`` (category ``ops``: never counted in caps)."""
    policy = ctx.policy
    from postsale.engine import message_id_for
    text = f"Alert from journey {journey.id} ({journey.name}):\n\n{alert.message}\n\nCustomer: {run.customer_id}\n"
    return {
        "id": message_id_for(run.id, f"{alert.step_id}#ops"), "run_id": run.id,
        "step_id": f"{alert.step_id}#ops", "customer_id": run.customer_id, "journey_id": journey.id,
        "touchpoint": journey.touchpoint.value, "category": "ops", "is_survey": False, "survey_id": None,
        "template": "-", "to_email": policy.ops_email, "to_name": "Operations",
        "from_email": policy.sender.transactional_from or policy.sender.from_, "reply_to": None,
        "subject": f"[postsale alert] {journey.id}: {alert.message}"[:200].replace("\n", " ").replace("\r", " "),
        "html": f"<pre>{_escape(text)}</pre>", "text_body": text, "headers": {}, "status": "queued",
        "created_at": now}


def _escape(text: str) -> str:
    import html
    return html.escape(text)


def next_due(ctx: Context) -> datetime | None:
    """When the earliest unfinished run is next due (what the virtual clock jumps to)."""
    with Session(ctx.engine) as session:
        return aware(session.scalar(select(func.min(Run.next_run_at)).where(Run.status.in_(UNFINISHED))))

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

A batch reads its runs and customers as plain rows and writes what it decided as plain rows:
one ``executemany`` for the run updates (grouped by the columns they change), one for the
timeline, one for the outbox. ORM objects would cost more than the decisions themselves.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql import bindparam
from sqlmodel import Session

from models import Customer as CustomerRow
from models import Event as EventRow
from models import Message, Run, Suppression, Timeline
from postsale.engine import advance_customer, program_for
from postsale.engine.types import (Alerted, CustomerState, Exited, Held, RunState, Sent,
                                   SentRecord, Skipped, StartJourney, Suppressed)
from postsale.events import Customer
from postsale.spec.model import Category, Journey, Policy, WaitFor
from postsale.store.context import Context
from postsale.store.ingest import UNFINISHED, enroll
from postsale.store.runs import (aware, ended_values, outcome_values, state_values, timeline_values,
                                 to_state)
from postsale.store.sql import email_hash, insert_all_new

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

    Both backends take the earliest due customers first, read off ``ix_runs_due`` in its own
    order a page at a time (``_due_customers``): the cost follows the due runs, not the table.
    PostgreSQL then locks those customers' rows, skipping the ones another transaction holds
    (another dispatcher's batch, an ingest of their events), and reads further down the due
    runs until it holds ``limit`` or none are left. (One statement that locked customers
    ``WHERE id IN (<due runs>) LIMIT n`` left the plan to the planner: with statistics it walked
    customers and runs in key order, each batch further than the last, the last one through the
    whole table; without, it read ``ix_runs_customer_journey`` whole for the status.)
    SQLite, one writer, needs no lock.
    """
    due = _due_customers(session, now, page=limit, only=only, exclude=exclude)
    if session.get_bind().dialect.name != "postgresql":
        return list(islice(due, limit))
    picked: list[str] = []
    while len(picked) < limit:
        candidates = list(islice(due, limit - len(picked)))
        if not candidates:
            break
        picked += session.scalars(select(CustomerRow.id).where(CustomerRow.id.in_(candidates))
                                  .with_for_update(skip_locked=True))
    return sorted(picked)


def _due_customers(session: Session, now: datetime, *, page: int, only: list[str] | None,
                   exclude: list[str] | None) -> Iterator[str]:
    """The customers of the earliest due runs (ties in customer order), each once.

    Read in pages of ``page`` runs, each page after the last (keyset): a query with its
    ``LIMIT`` in view is one every planner runs as an ordered scan of ``ix_runs_due`` that stops
    there, where an open-ended one (a cursor) may be planned as "read every due run and sort".
    """
    runs = Run.__table__
    due = (select(runs.c.next_run_at, runs.c.customer_id)
           .where(runs.c.next_run_at <= now, runs.c.status.in_(UNFINISHED))
           .order_by(runs.c.next_run_at, runs.c.customer_id).limit(page))
    if only is not None:
        due = due.where(runs.c.customer_id.in_(only))
    skip = set(exclude or ())
    conn = session.connection()
    after = None
    while True:
        query = due if after is None else due.where(tuple_(runs.c.next_run_at, runs.c.customer_id) > after)
        rows = conn.execute(query).all()
        for _at, customer_id in rows:
            if customer_id not in skip:
                skip.add(customer_id)
                yield customer_id
        if len(rows) < page:
            return
        after = tuple(rows[-1])   # compared column by column, each bound as its column's type


_RUNS = Run.__table__
_CUSTOMERS = CustomerRow.__table__
# what deciding a run reads of it (a Core row: ORM objects cost more to load and to update)
_RUN_COLUMNS = [_RUNS.c[name] for name in (
    "id", "customer_id", "journey_id", "version_id", "status", "step_index", "step_id", "next_run_at",
    "entered_at", "waiting_for", "trigger_event_id", "context")]
_CUSTOMER_COLUMNS = [_CUSTOMERS.c[name] for name in (
    "id", "email", "name", "timezone", "locale", "attributes", "open_tickets")]


class _Writes:
    """A batch's writes, gathered as plain rows and sent as one ``executemany`` per statement.

    Run updates are grouped by the columns they set (an ``executemany`` sets the same columns in
    every row); timeline rows keep the order the decisions were taken in (their ids are what
    ``report`` and ``simulate`` order by).
    """

    def __init__(self) -> None:
        self.runs: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        self.timeline: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []

    def run(self, run_id: str, values: dict[str, Any]) -> None:
        values["run_id_"] = run_id
        self.runs[tuple(values)].append(values)

    def end(self, run: Row, now: datetime, reason: str) -> None:
        """What ``postsale.store.ingest.end_run`` does to a run, as rows of this batch."""
        self.run(run.id, ended_values(now, reason))
        self.timeline.append(timeline_values(at=now, customer_id=run.customer_id, journey_id=run.journey_id,
                                             run_id=run.id, step_id=run.step_id, action="exited",
                                             reason=reason))

    def flush(self, session: Session) -> None:
        """Write the run updates and timeline rows gathered so far (the outbox waits for ``commit``)."""
        for rows in self.runs.values():
            session.execute(_UPDATE_RUN, rows)
        if self.timeline:
            session.execute(insert(Timeline.__table__), self.timeline)
        self.runs.clear()
        self.timeline.clear()

    def write(self, session: Session) -> None:
        self.flush(session)
        insert_all_new(session, Message, self.outbox, ["run_id", "step_id"])
        self.outbox.clear()


# UPDATE runs SET <the columns each row's dict names> WHERE id = :run_id_
_UPDATE_RUN = update(_RUNS).where(_RUNS.c.id == bindparam("run_id_"))


def _dispatch_batch(session: Session, ctx: Context, customer_ids: list[str], now: datetime,
                    report: DispatchReport) -> None:
    policy = ctx.policy
    conn = session.connection()
    runs_by_customer: dict[str, list[Row]] = defaultdict(list)
    for run in conn.execute(select(*_RUN_COLUMNS).where(_RUNS.c.customer_id.in_(customer_ids),
                                                        _RUNS.c.next_run_at <= now,
                                                        _RUNS.c.status.in_(UNFINISHED))):
        runs_by_customer[run.customer_id].append(run)
    customers = {row.id: row for row in conn.execute(select(*_CUSTOMER_COLUMNS)
                                                     .where(_CUSTOMERS.c.id.in_(customer_ids)))}
    history = _history(conn, customer_ids, now - history_window(policy))
    hashes = {row.id: email_hash(row.email) for row in customers.values() if row.email}
    suppressed = _suppressions(conn, list(hashes.values()))
    exit_events = _exit_events(conn, ctx, customer_ids)
    writes = _Writes()
    for customer_id in customer_ids:
        runs = runs_by_customer.get(customer_id)
        if not runs:
            continue
        row = customers.get(customer_id)
        report.customers += 1
        reason, scope = suppressed.get(hashes.get(customer_id), (None, None))
        if row is None or not row.email or scope == "all":  # forgotten: nothing more is sent to this person
            for run in runs:
                writes.end(run, now, "customer forgotten")
                report.count(run.journey_id, "exited")
            continue
        items: list[tuple[RunState, Journey]] = []
        rows_by_id = {}
        for run in runs:
            journey = _journey_for(ctx, run)
            if journey is None:
                writes.end(run, now, "journey removed")
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
            _apply_result(session, ctx, run, journey, result, state.customer, now, report, writes)
        report.runs += len(results)
    writes.write(session)


def _journey_for(ctx: Context, run: Row) -> Journey | None:
    """The version the run entered with, unless its journey file was removed."""
    if ctx.versions.current_id(run.journey_id) is None:
        return None
    return ctx.versions.journey(run.version_id)


def _history(conn: Connection, customer_ids: list[str], since: datetime) -> dict[str, list[SentRecord]]:
    out: dict[str, list[SentRecord]] = defaultdict(list)
    m = Message.__table__.c
    rows = conn.execute(select(m.customer_id, m.created_at, m.journey_id, m.category, m.is_survey)
                        .where(m.customer_id.in_(customer_ids), m.created_at >= since,
                               m.category.in_(("marketing", "transactional")), m.status != "failed"))
    for cid, at, journey_id, category, is_survey in rows:
        out[cid].append(SentRecord(aware(at), journey_id, Category(category), bool(is_survey)))
    return out


def _suppressions(conn: Connection, hashes: list[str]) -> dict[str, tuple[str, str]]:
    """(reason, scope) by address hash: scope ``all`` (forgotten) stops every email."""
    if not hashes:
        return {}
    s = Suppression.__table__.c
    rows = conn.execute(select(s.email_hash, s.reason, s.scope).where(s.email_hash.in_(hashes)))
    return {h: (reason, scope) for h, reason, scope in rows}


def _exit_events(conn: Connection, ctx: Context, customer_ids: list[str]) -> dict[str, list[tuple[str, datetime]]]:
    types = sorted({t for j in ctx.catalog.journeys.values() for t in j.exit_when})
    out: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    if not types:
        return out
    e = EventRow.__table__.c
    for cid, etype, at in conn.execute(select(e.customer_id, e.type, e.occurred_at)
                                       .where(e.customer_id.in_(customer_ids), e.type.in_(types))):
        out[cid].append((etype, aware(at)))
    return out


def _apply_result(session: Session, ctx: Context, run: Row, journey: Journey, result, customer: Customer,
                  now: datetime, report: DispatchReport, writes: _Writes) -> None:
    exit_reason = None
    for outcome in result.outcomes:
        if isinstance(outcome, StartJourney):
            target = ctx.catalog.journeys.get(outcome.journey_id)
            if target is not None:
                # enroll reads the customer's runs (reentry rules) and writes the timeline
                # itself: what this batch decided so far goes first, in order.
                writes.flush(session)
                enroll(session, ctx, target, run.customer_id, trigger=result.run.trigger,
                       answers=dict(result.run.answers), key=f"{run.id}/{outcome.step_id}/{target.id}",
                       now=now, trigger_event_id=run.trigger_event_id)
                report.count(target.id, "entered")
            continue
        writes.timeline.append(outcome_values(outcome, at=now, customer_id=run.customer_id,
                                              journey_id=run.journey_id, run_id=run.id))
        report.count(journey.id, outcome.action)
        if isinstance(outcome, Sent):
            writes.outbox.append(_message(ctx, run, journey, outcome, customer, now))
        elif isinstance(outcome, (Skipped, Suppressed)):
            report.skip_reasons[outcome.reason] += 1
            report.notices.append(("info", f"{customer.id} {journey.id}/{outcome.step_id} {outcome.action}: {outcome.reason}"))
        elif isinstance(outcome, Held):
            report.notices.append(("info", f"{customer.id} {journey.id}/{outcome.step_id} held: {outcome.reason}"))
        elif isinstance(outcome, Alerted):
            report.notices.append(("warning", f"ALERT {journey.id}: {outcome.message}"))
            log.warning("alert from %s for %s: %s", journey.id, customer.id, outcome.message)
            if ctx.policy.ops_email:
                writes.outbox.append(_ops_alert(ctx, run, journey, outcome, now))
        elif isinstance(outcome, Exited):
            exit_reason = outcome.reason
    step = _step_at(journey, result.run.step_index)
    waiting_for = step.event if isinstance(step, WaitFor) else run.waiting_for
    writes.run(run.id, state_values(result.run, run, step_id=step.id if step else None, now=now,
                                    waiting_for=waiting_for, exit_reason=exit_reason))


def _step_at(journey: Journey, index: int):
    return program_for(journey).step_at(index)


def _message(ctx: Context, run: Row, journey: Journey, sent: Sent, customer: Customer,
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


def _ops_alert(ctx: Context, run: Row, journey: Journey, alert: Alerted, now: datetime) -> dict[str, Any]:
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

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
import weakref
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import bindparam
from sqlmodel import Session

from models import Customer as CustomerRow
from models import Event as EventRow
from models import Message, Run, Suppression, Timeline
from postsale.spec.model import Journey, Policy
from postsale.store.context import Context
from postsale.store.dbapi import Statement, fetch_raw
from postsale.store.decide import (CUSTOMER_COLUMNS, OUTBOX_COLUMNS, RUN_COLUMNS, RUN_ID_KEY, TIMELINE_COLUMNS,
                                   Decided, Job)
from postsale.store.ingest import UNFINISHED, enroll
from postsale.store.runs import aware
from postsale.store.sql import dialect_insert, email_hash
from postsale.store.workers import POOL_START_BACKLOG, decide_batch, pool_running

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
             on_batch: Callable[[DispatchReport], None] | None = None,
             workers: int | None = None) -> DispatchReport:
    """Advance every due customer (or only ``customer_ids``) once, in batches.

    ``on_batch`` is called with the running report after each batch commits. ``workers``
    (default ``ctx.dispatch_workers``) is how many processes decide a large batch: this one
    and ``workers - 1`` others (``postsale.store.workers``); 1 decides every batch here.
    """
    workers = ctx.dispatch_workers if workers is None else workers
    report = DispatchReport()
    now = ctx.clock.now()
    only = sorted(set(customer_ids)) if customer_ids is not None else None
    if workers != 1 and not pool_running(ctx) and not _backlog_at_least(ctx, now, only, POOL_START_BACKLOG):
        workers = 1     # a short pass: starting processes would cost more than they save
    rounds: Counter = Counter()
    while max_batches is None or report.batches < max_batches:
        with Session(ctx.engine) as session:
            # a run that stays due within one dispatch must not spin it forever
            exhausted = [c for c, n in rounds.items() if n >= MAX_ROUNDS]
            batch = claim(session, now, ctx.batch_size, only=only, exclude=exhausted)
            if not batch:
                break
            rounds.update(batch)
            _dispatch_batch(session, ctx, batch, now, report, workers)
            session.commit()
        report.batches += 1
        if on_batch is not None:
            on_batch(report)
    return report


def _backlog_at_least(ctx: Context, now: datetime, only: list[str] | None, count: int) -> bool:
    """Whether at least ``count`` runs are due at ``now`` (read off ``ix_runs_due``, stopping
    at ``count``: the cost is bounded whatever the table holds). A pass over named customers
    (serve's, right after their events) is as long as its list."""
    if only is not None:
        return len(only) >= count
    runs = Run.__table__
    due = select(runs.c.id).where(runs.c.next_run_at <= now, runs.c.status.in_(UNFINISHED))
    with ctx.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(due.limit(count).subquery())) >= count


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
_MESSAGES = Message.__table__
_EVENTS = EventRow.__table__
_RUN_COLUMNS = [_RUNS.c[name] for name in RUN_COLUMNS]
_CUSTOMER_COLUMNS = [_CUSTOMERS.c[name] for name in CUSTOMER_COLUMNS]


def _dispatch_batch(session: Session, ctx: Context, customer_ids: list[str], now: datetime,
                    report: DispatchReport, workers: int) -> None:
    """Read the batch's rows, decide (``postsale.store.decide``), write, all in the caller's
    transaction: the same rows whoever decides them."""
    conn = session.connection()
    jobs, journeys = _read(conn, ctx, customer_ids, now)
    decided = decide_batch(ctx, jobs, journeys, now, workers)
    writes = _Writes(conn.dialect)
    for part in decided:
        writes.add(session, ctx, part, now, report)
    writes.write(conn)


def _read(conn: Connection, ctx: Context, customer_ids: list[str], now: datetime
          ) -> tuple[list[Job], dict[int, Journey | None]]:
    """The batch's customers with due runs, as DBAPI rows, in ``customer_ids`` order, and the
    journey version of each of their runs (None: the journey file was removed)."""
    runs_by_customer: dict[str, list[tuple]] = defaultdict(list)
    for run in fetch_raw(conn, select(*_RUN_COLUMNS).where(_RUNS.c.customer_id.in_(customer_ids),
                                                           _RUNS.c.next_run_at <= now,
                                                           _RUNS.c.status.in_(UNFINISHED))):
        runs_by_customer[run[1]].append(run)
    customers = {row[0]: row for row in fetch_raw(conn, select(*_CUSTOMER_COLUMNS)
                                                  .where(_CUSTOMERS.c.id.in_(customer_ids)))}
    history = _history(conn, customer_ids, now - history_window(ctx.policy))
    hashes = {row[0]: email_hash(row[1]) for row in customers.values() if row[1]}
    suppressed = _suppressions(conn, list(hashes.values()))
    exit_events = _exit_events(conn, ctx, customer_ids)
    jobs: list[Job] = []
    journeys: dict[int, Journey | None] = {}
    for customer_id in customer_ids:
        runs = runs_by_customer.get(customer_id)
        if not runs:
            continue
        for run in runs:
            if run[3] not in journeys:
                journeys[run[3]] = _journey_for(ctx, run[2], run[3])
        jobs.append(Job(customer_id, customers.get(customer_id), runs, history.get(customer_id, []),
                        suppressed.get(hashes.get(customer_id)), exit_events.get(customer_id, [])))
    return jobs, journeys


def _journey_for(ctx: Context, journey_id: str, version_id: int) -> Journey | None:
    """The version the run entered with, unless its journey file was removed."""
    if ctx.versions.current_id(journey_id) is None:
        return None
    return ctx.versions.journey(version_id)


def _history(conn: Connection, customer_ids: list[str], since: datetime) -> dict[str, list[tuple]]:
    """(created_at, journey, category, is_survey) of what each customer was sent since ``since``."""
    out: dict[str, list[tuple]] = defaultdict(list)
    m = _MESSAGES.c
    for row in fetch_raw(conn, select(m.customer_id, m.created_at, m.journey_id, m.category, m.is_survey)
                         .where(m.customer_id.in_(customer_ids), m.created_at >= since,
                                m.category.in_(("marketing", "transactional")), m.status != "failed")):
        out[row[0]].append(row[1:])
    return out


def _suppressions(conn: Connection, hashes: list[str]) -> dict[str, tuple[str, str]]:
    """(reason, scope) by address hash: scope ``all`` (forgotten) stops every email."""
    if not hashes:
        return {}
    s = Suppression.__table__.c
    rows = fetch_raw(conn, select(s.email_hash, s.reason, s.scope).where(s.email_hash.in_(hashes)))
    return {h: (reason, scope) for h, reason, scope in rows}


def _exit_events(conn: Connection, ctx: Context, customer_ids: list[str]) -> dict[str, list[tuple]]:
    """(type, occurred_at) of each customer's events that some journey exits on."""
    types = sorted({t for j in ctx.catalog.journeys.values() for t in j.exit_when})
    out: dict[str, list[tuple]] = defaultdict(list)
    if not types:
        return out
    e = _EVENTS.c
    for cid, etype, at in fetch_raw(conn, select(e.customer_id, e.type, e.occurred_at)
                                    .where(e.customer_id.in_(customer_ids), e.type.in_(types))):
        out[cid].append((etype, at))
    return out


class _Writes:
    """A batch's writes, gathered as DBAPI rows and sent as one ``executemany`` per statement.

    Run updates are grouped by the columns they set (an ``executemany`` sets the same columns in
    every row); timeline rows keep the order the decisions were taken in (their ids are what
    ``report`` and ``simulate`` order by). Before an ``enroll`` (which reads the customer's runs
    and writes the timeline itself) what was decided so far is written, in order.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.statements = statements_for(dialect)
        self.runs: dict[tuple[str, ...], list[tuple]] = defaultdict(list)
        self.timeline: list[tuple] = []
        self.outbox: list[tuple] = []

    def add(self, session: Session, ctx: Context, decided: Decided, now: datetime,
            report: DispatchReport) -> None:
        """Take one part of the batch's decisions (parts come in decision order)."""
        timeline_at = runs_at = 0
        for timeline_to, runs_to, request in decided.enrolls:
            self._take(decided, timeline_at, timeline_to, runs_at, runs_to)
            timeline_at, runs_at = timeline_to, runs_to
            self.flush(session.connection())
            enroll(session, ctx, ctx.catalog.journeys[request.journey_id], request.customer_id,
                   trigger=request.trigger, answers=request.answers, key=request.key, now=now,
                   trigger_event_id=request.trigger_event_id)
        self._take(decided, timeline_at, len(decided.timeline), runs_at, len(decided.runs))
        self.outbox += decided.outbox
        _replay(decided, report)

    def _take(self, decided: Decided, t_from: int, t_to: int, r_from: int, r_to: int) -> None:
        self.timeline += decided.timeline[t_from:t_to]
        runs = self.runs
        for keys, params in decided.runs[r_from:r_to]:
            runs[keys].append(params)

    def flush(self, conn: Connection) -> None:
        """Write the run updates and timeline rows gathered so far (the outbox waits for ``write``)."""
        for keys, rows in self.runs.items():
            self.statements.run_update(keys).executemany(conn, rows)
        self.statements.timeline.executemany(conn, self.timeline)
        self.runs.clear()
        self.timeline.clear()

    def write(self, conn: Connection) -> None:
        self.flush(conn)
        self.statements.outbox.executemany(conn, self.outbox)   # ON CONFLICT (run_id, step_id) DO NOTHING
        self.outbox.clear()


class _Statements:
    """The batch's INSERTs and UPDATEs, compiled once per dialect (``postsale.store.dbapi``)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.timeline = Statement(insert(Timeline.__table__), TIMELINE_COLUMNS, dialect)
        # the outbox key: a step never queues two emails, whoever wrote the first (guarantee 2)
        outbox = dialect_insert(dialect, _MESSAGES).on_conflict_do_nothing(index_elements=["run_id", "step_id"])
        self.outbox = Statement(outbox, OUTBOX_COLUMNS, dialect)
        self._updates: dict[tuple[str, ...], Statement] = {}

    def run_update(self, keys: tuple[str, ...]) -> Statement:
        """UPDATE runs SET <keys but the last> WHERE id = :run_id_ (the last key)."""
        stmt = self._updates.get(keys)
        if stmt is None:
            assert keys[-1] == RUN_ID_KEY
            stmt = self._updates[keys] = Statement(_UPDATE_RUN, keys, self.dialect, column_keys=keys[:-1])
        return stmt


_UPDATE_RUN = update(_RUNS).where(_RUNS.c.id == bindparam(RUN_ID_KEY))
_statements: "weakref.WeakKeyDictionary[Dialect, _Statements]" = weakref.WeakKeyDictionary()


def statements_for(dialect: Dialect) -> _Statements:
    found = _statements.get(dialect)
    if found is None:
        found = _statements[dialect] = _Statements(dialect)
    return found


def _replay(decided: Decided, report: DispatchReport) -> None:
    """Count what ``decided`` did into the report, in the order it was decided."""
    report.customers += decided.customers
    report.runs += decided.runs_advanced
    for entry in decided.report:
        kind = entry[0]
        if kind == "count":
            report.count(entry[1], entry[2])
        elif kind == "skip":
            report.skip_reasons[entry[1]] += 1
        elif kind == "notice":
            report.notices.append((entry[1], entry[2]))
        else:
            log.warning("alert from %s for %s: %s", entry[1], entry[2], entry[3])


def next_due(ctx: Context) -> datetime | None:
    """When the earliest unfinished run is next due (what the virtual clock jumps to)."""
    with Session(ctx.engine) as session:
        return aware(session.scalar(select(func.min(Run.next_run_at)).where(Run.status.in_(UNFINISHED))))

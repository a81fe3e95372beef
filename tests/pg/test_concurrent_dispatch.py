"""Guarantees 2 and 3 under concurrent dispatchers (SPEC.md §9), on PostgreSQL.

5,000 customers (``tests.pg.scenario``) with two to four emails due at the same moment compete
under tight caps. Four dispatcher processes share one schema and one virtual ``NOW``; one is
killed with SIGKILL while it holds a batch (seen in ``pg_stat_activity`` with uncommitted
writes, after it has committed a batch of its own) and started again. Then:

- every email is queued exactly once: the outbox equals what a single dispatcher decides from
  the same state (a copy of the schema), with one row per (run, step) and one per ``sent``;
- no customer is over a cap or under min_gap (recomputed from the outbox), and quiet hours,
  open tickets and unsubscribes held;
- no run is stuck (nothing is due at or before ``NOW``), and no decision was taken twice.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from models import Customer, Message, Run, Suppression, Timeline
from postsale.store.ingest import UNFINISHED
from postsale.store.runs import aware
from postsale.store.sql import email_hash
from tests.pg.database import copy_schema, fresh_schema, require_postgres
from tests.pg.scenario import NOW, context, seed, worker

pytestmark = pytest.mark.postgres

CUSTOMERS = 5_000
DISPATCHERS = 4
BATCH = 100
TIMEOUT = 300.0   # seconds any one phase may take before the test gives up


def test_four_dispatchers_one_killed_send_every_due_email_once_within_caps():
    require_postgres()
    with fresh_schema("conc") as shared, fresh_schema("ref") as reference:
        t0 = time.monotonic()
        seed(shared.url, CUSTOMERS)
        copy_schema(shared, reference)
        t1 = time.monotonic()
        expected = _finish(worker("dispatch", "--batch-size", str(BATCH), url=reference.url, name="ref"))

        t2 = time.monotonic()
        procs = [worker("dispatch", "--batch-size", str(BATCH), url=shared.url, name=f"d{n}")
                 for n in range(DISPATCHERS)]
        victim = procs[0]
        committed_before_kill = _kill_mid_batch(victim, shared.url, "d0")
        restarted = worker("dispatch", "--batch-size", str(BATCH), url=shared.url, name="d0r")
        reports = [_finish(p) for p in procs[1:] + [restarted]]
        print(f"seed {t1 - t0:.1f}s, reference {expected['seconds']}s, concurrent {time.monotonic() - t2:.1f}s")

        engine = create_engine(shared.url, poolclass=NullPool)
        ref_engine = create_engine(reference.url, poolclass=NullPool)
        try:
            # the work was shared, and no committed customer was advanced twice
            assert sum(1 for r in reports if r["batches"]) >= 2
            assert sum(r["customers"] for r in reports) + committed_before_kill == expected["customers"]
            assert expected["actions"]["sent"] > CUSTOMERS // 2 and expected["actions"]["held"] > CUSTOMERS // 2

            _assert_same_outcome(engine, ref_engine)
            _assert_exactly_once(engine)
            _assert_nothing_due(engine)
            _assert_caps_and_holds(engine, context(shared.url, NOW))
        finally:
            engine.dispose()
            ref_engine.dispose()


# ---------------------------------------------------------------- processes

def _finish(proc) -> dict:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _kill_mid_batch(proc, url: str, name: str) -> int:
    """SIGKILL ``proc`` while it holds uncommitted writes, once it has committed a batch.

    Returns how many customers it had advanced in the batches it committed.
    """
    watchdog = threading.Timer(TIMEOUT, proc.kill)       # readline must not block for ever
    watchdog.start()
    first = json.loads(proc.stdout.readline() or "{}")   # returns at its first commit
    watchdog.cancel()
    assert first.get("batch") == 1, f"the victim ended before committing a batch: {first}"
    engine = create_engine(require_postgres(), poolclass=NullPool)
    deadline = time.monotonic() + TIMEOUT
    try:
        with engine.connect() as conn:
            while True:
                writing = conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                    "AND backend_xid IS NOT NULL"), {"name": name}).scalar()
                if writing:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                assert proc.poll() is None, "the victim finished before it could be killed mid-batch"
                assert time.monotonic() < deadline
                conn.rollback()
                time.sleep(0.005)
            proc.wait(timeout=30)
            while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                               {"name": name}).scalar():
                conn.rollback()          # the server notices the dead client and rolls back
                time.sleep(0.05)
                assert time.monotonic() < deadline
    finally:
        engine.dispose()
    assert proc.returncode == -signal.SIGKILL
    lines = [first] + [json.loads(line) for line in proc.stdout.read().splitlines() if line.strip()]
    assert not any(line.get("done") for line in lines)
    return lines[-1]["customers"]


# ---------------------------------------------------------------- checks

def _assert_same_outcome(engine: Engine, ref_engine: Engine) -> None:
    """The four (one killed) decided exactly what one dispatcher decides from the same state."""
    def outcome(e: Engine):
        with Session(e) as s:
            messages = sorted(s.execute(select(Message.id, Message.run_id, Message.step_id, Message.subject,
                                               Message.created_at)).all())
            runs = sorted(s.execute(select(Run.id, Run.status, Run.step_index, Run.next_run_at)).all())
            decisions = sorted(s.execute(select(*(func.coalesce(c, "") for c in (
                Timeline.customer_id, Timeline.run_id, Timeline.step_id, Timeline.action, Timeline.reason)))
                .where(Timeline.at == NOW)).all())
        return messages, runs, decisions

    got, want = outcome(engine), outcome(ref_engine)
    for name, g, w in zip(("messages", "runs", "decisions"), got, want, strict=True):
        assert len(g) == len(w) and g == w, f"{name} differ from the single-dispatcher reference"


def _assert_exactly_once(engine: Engine) -> None:
    with Session(engine) as s:
        twice = s.execute(select(Message.run_id, Message.step_id).group_by(Message.run_id, Message.step_id)
                          .having(func.count() > 1)).all()
        assert twice == []
        sent = s.execute(select(Timeline.run_id, Timeline.step_id).where(Timeline.action == "sent")).all()
        queued = s.execute(select(Message.run_id, Message.step_id).where(Message.category != "ops")).all()
        assert len(sent) == len(set(sent)) and set(sent) == set(queued)   # no run missing its message
        repeated = s.execute(select(Timeline.run_id, Timeline.step_id, Timeline.action)
                             .where(Timeline.at == NOW, Timeline.run_id.is_not(None))
                             .group_by(Timeline.run_id, Timeline.step_id, Timeline.action)
                             .having(func.count() > 1)).all()
        assert repeated == []


def _assert_nothing_due(engine: Engine) -> None:
    with Session(engine) as s:
        stuck = s.scalar(select(func.count()).select_from(Run)
                         .where(Run.status.in_(UNFINISHED), Run.next_run_at <= NOW))
    assert stuck == 0


def _assert_caps_and_holds(engine: Engine, ctx) -> None:
    """Recompute every marketing email's caps, gap, quiet hours and holds from the outbox."""
    policy = ctx.policy
    ctx.engine.dispose()
    cap, per_journey, quiet = policy.marketing_cap, policy.journey_cap, policy.quiet_hours
    with Session(engine) as s:
        rows = s.execute(select(Message.customer_id, Message.created_at, Message.journey_id, Message.category)
                         .where(Message.category.in_(("marketing", "transactional")),
                                Message.status != "failed")).all()
        customers = {c.id: c for c in s.scalars(select(Customer))}
        suppressed = set(s.scalars(select(Suppression.email_hash)))
    log: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for cid, at, journey, category in rows:
        log[cid].append((aware(at), journey, category))
    now_sent = 0
    for cid, sends in log.items():
        for n, (at, journey, category) in enumerate(sends):
            if category != "marketing":
                continue
            # at one instant transactional mail is decided first (scenario), so it counts
            others = [(t, j, c) for m, (t, j, c) in enumerate(sends) if m != n and t <= at]
            assert not [t for t, _, _ in others if t > at - cap.min_gap], f"{cid}: min_gap broken at {at}"
            assert len([t for t, _, _ in others if t > at - cap.per]) < cap.max, f"{cid}: marketing cap at {at}"
            assert len([t for t, j, _ in others if j == journey and t > at - per_journey.per]) < per_journey.max
            local = at.astimezone(ZoneInfo(customers[cid].timezone)).time()
            assert quiet.end <= local < quiet.start, f"{cid}: marketing in quiet hours ({local})"
            if at == NOW:
                now_sent += 1
                assert customers[cid].open_tickets == 0, f"{cid}: marketing while a ticket is open"
                assert email_hash(customers[cid].email) not in suppressed, f"{cid}: marketing after unsubscribe"
    assert now_sent > CUSTOMERS // 5

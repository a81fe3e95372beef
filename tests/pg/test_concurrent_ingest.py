"""Guarantee 1 and the reentry rules under concurrent ingest, on PostgreSQL.

Four processes ingest the same events, each in its own shuffled order and in small batches:
every event is delivered four times at once, and one customer's events are applied by
different processes at the same moment. Each event must be accepted exactly once, and the
customer lock must keep ``reentry: never`` and "one active run per journey" true: a customer
with two orders enters ``welcome`` once. And a batch PostgreSQL aborts to break a deadlock
is tried again, whole.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select, text
from sqlmodel import Session

from models import Event as EventRow
from models import Run, Timeline, create_db_engine, init_db
from postsale.store.ingest import UNFINISHED, ingest_events
from tests.pg.database import fresh_schema
from tests.pg.scenario import WAVE2, context, customer, worker
from tests.store.events import event, raw

pytestmark = pytest.mark.postgres

CUSTOMERS = 300
PROCESSES = 4


def _events() -> list[dict]:
    out = []
    items = [{"sku": "KETTLE-1", "name": "Kettle", "category": "kitchen", "quantity": 1, "price": 30}]
    for i in range(CUSTOMERS):
        c = customer(i)
        for n in (1, 2):   # two orders: welcome is reentry: never
            out.append(raw(f"o{n}-{i}", "order.placed", WAVE2, c, order_id=f"o{n}-{i}", total=30.0,
                           currency="EUR", items=items))
        out.append(raw(f"ship-{i}", "order.shipped", WAVE2, c, order_id=f"o1-{i}"))     # reentry: always
        out.append(raw(f"deliv-{i}", "order.delivered", WAVE2, c, order_id=f"o1-{i}"))  # reentry: after 30d
        out.append(raw(f"cart-{i}", "cart.abandoned", WAVE2, c, items=[]))
    return out


def test_four_ingesters_of_the_same_events_accept_each_once_and_enroll_once(tmp_path):
    events = _events()
    with fresh_schema("ing") as schema:
        engine = create_db_engine(schema.url)
        init_db(engine)
        procs = []
        for n in range(PROCESSES):
            path = tmp_path / f"events-{n}.ndjson"
            path.write_text("\n".join(json.dumps(e) for e in random.Random(n).sample(events, len(events))))
            procs.append(worker("ingest", "--events", str(path), "--now", WAVE2.isoformat(), "--chunk", "25",
                                url=schema.url, name=f"i{n}"))
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            assert "retried" not in err      # events and customers are locked in key order: no deadlock
            results.append(json.loads(out.strip().splitlines()[-1]))
        try:
            with Session(engine) as s:
                stored = s.scalar(select(func.count()).select_from(EventRow))
                runs = s.execute(select(Run.customer_id, Run.journey_id, Run.status)).all()
                entered = s.scalar(select(func.count()).where(Timeline.action == "entered"))
        finally:
            engine.dispose()
    assert sum(r["accepted"] for r in results) == stored == len(events)
    assert sum(r["duplicates"] for r in results) == len(events) * (PROCESSES - 1)
    assert entered == len(runs)
    per_customer = {j: Counter(c for c, journey, _ in runs if journey == j) for j in ("welcome", "review", "shipping")}
    for journey, counts in per_customer.items():
        assert len(counts) == CUSTOMERS and set(counts.values()) == {1}, journey   # two orders, one welcome
    active = Counter((c, j) for c, j, status in runs if status in UNFINISHED and j != "shipping")
    assert set(active.values()) == {1}                                            # one active run a journey


def test_a_batch_aborted_to_break_a_deadlock_is_retried_whole(caplog):
    """Another transaction holds customer B, then asks for A while a batch holds A and waits for
    B: PostgreSQL aborts the batch (its deadlock check runs first), and it is tried again."""
    with fresh_schema("dl") as schema:
        ctx = context(schema.url, WAVE2)
        a, b = customer(1), customer(2)
        ingest_events(ctx, [event("a0", "order.shipped", WAVE2, a), event("b0", "order.shipped", WAVE2, b)])
        rival = ctx.engine.connect()
        rival.execute(text("SET deadlock_timeout = '20s'"))   # so that the batch is the one aborted
        rival.execute(text("SELECT id FROM customers WHERE id = :id FOR UPDATE"), {"id": b["id"]})
        outcome: dict = {}
        batch = [event("a1", "order.shipped", WAVE2, a), event("b1", "order.shipped", WAVE2, b)]
        thread = threading.Thread(target=lambda: outcome.update(result=ingest_events(ctx, batch)))
        thread.start()
        with ctx.engine.connect() as watch:
            for _ in range(3000):   # until the batch holds A and waits for B
                waiting = watch.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND query LIKE 'INSERT INTO customers%'")).scalar()
                watch.rollback()
                if waiting:
                    break
                thread.join(0.01)
            assert waiting
        rival.execute(text("SELECT id FROM customers WHERE id = :id FOR UPDATE"), {"id": a["id"]})
        rival.commit()
        rival.close()
        thread.join(60)
        ctx.engine.dispose()
    assert outcome["result"].accepted == ["a1", "b1"]
    assert "retried" in caplog.text

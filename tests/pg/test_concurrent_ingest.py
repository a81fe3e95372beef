"""Guarantee 1 and the reentry rules under concurrent ingest, on PostgreSQL.

Four processes ingest the same events, each in its own shuffled order and in small batches:
every event is delivered four times at once, and one customer's events are applied by
different processes at the same moment. Each event must be accepted exactly once, and the
customer lock must keep ``reentry: never`` and "one active run per journey" true: a customer
with two orders enters ``welcome`` once.
"""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models import Event as EventRow
from models import Run, Timeline, create_db_engine, init_db
from postsale.store.ingest import UNFINISHED
from tests.pg.database import fresh_schema
from tests.pg.scenario import WAVE2, customer, worker
from tests.store.events import raw

pytestmark = pytest.mark.postgres

CUSTOMERS = 300
PROCESSES = 4


def _events() -> list[dict]:
    out = []
    for i in range(CUSTOMERS):
        c = customer(i)
        items = [{"sku": "KETTLE-1", "name": "Kettle", "category": "kitchen", "quantity": 1, "price": 30}]
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
        files = []
        for n in range(PROCESSES):
            shuffled = random.Random(n).sample(events, len(events))
            path = tmp_path / f"events-{n}.ndjson"
            path.write_text("\n".join(json.dumps(e) for e in shuffled))
            files.append(path)
        procs = [worker("ingest", "--events", str(path), "--now", WAVE2.isoformat(), "--chunk", "25",
                        url=schema.url, name=f"i{n}") for n, path in enumerate(files)]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            assert "retried" not in err      # events and customers are locked in key order: no deadlock
            results.append(json.loads(out.strip().splitlines()[-1]))
        try:
            assert sum(r["accepted"] for r in results) == len(events)
            assert sum(r["duplicates"] for r in results) == len(events) * (PROCESSES - 1)
            with Session(engine) as s:
                assert s.scalar(select(func.count()).select_from(EventRow)) == len(events)
                runs = s.execute(select(Run.customer_id, Run.journey_id, Run.status)).all()
                entered = s.scalar(select(func.count()).where(Timeline.action == "entered"))
        finally:
            engine.dispose()
        per_journey: dict[str, dict[str, int]] = {}
        for customer_id, journey_id, status in runs:
            counts = per_journey.setdefault(journey_id, {})
            counts[customer_id] = counts.get(customer_id, 0) + 1
        assert entered == len(runs)
        assert sorted(per_journey["welcome"].values()) == [1] * CUSTOMERS            # two orders, one run
        assert sorted(per_journey["review"].values()) == [1] * CUSTOMERS
        assert sorted(per_journey["shipping"].values()) == [1] * CUSTOMERS
        active: dict[tuple[str, str], int] = {}
        for customer_id, journey_id, status in runs:
            if status in UNFINISHED and journey_id != "shipping":
                active[customer_id, journey_id] = active.get((customer_id, journey_id), 0) + 1
        assert set(active.values()) == {1}                                         # one active run a journey


def test_a_batch_aborted_to_break_a_deadlock_is_retried_whole(caplog):
    """Another transaction holds customer B and then asks for A while a batch holds A and waits
    for B: PostgreSQL aborts the batch (its deadlock check runs first), which is tried again."""
    from sqlalchemy import text

    from postsale.store.ingest import ingest_events
    from tests.pg.scenario import context
    from tests.store.events import event

    with fresh_schema("dl") as schema:
        ctx = context(schema.url, WAVE2)
        a, b = customer(1), customer(2)
        ingest_events(ctx, [event("a0", "order.shipped", WAVE2, a), event("b0", "order.shipped", WAVE2, b)])
        rival = ctx.engine.connect()
        rival.execute(text("SET deadlock_timeout = '20s'"))   # so the batch is the one aborted
        rival.execute(text("SELECT id FROM customers WHERE id = :id FOR UPDATE"), {"id": b["id"]})

        import threading
        outcome: dict = {}
        batch = [event("a1", "order.shipped", WAVE2, a), event("b1", "order.shipped", WAVE2, b)]
        thread = threading.Thread(target=lambda: outcome.update(result=ingest_events(ctx, batch)))
        thread.start()
        with ctx.engine.connect() as watch:
            for _ in range(2000):   # until the batch holds A and waits for B
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

"""Process faults (issue 9, SPEC §9.2-9.3), on SQLite and, when ``POSTSALE_TEST_PG_URL`` is
set, on PostgreSQL.

The dispatcher: SIGKILL ``postsale dispatch``-style workers over and over at random points of a
run over ~1,000 customers (virtual clock), then let a clean run finish. The outcome must equal
what one uninterrupted dispatcher decides from the same state (a copy), every (run, step) is
queued once, nothing due is left behind, and no cap, gap, quiet hour or hold is broken
(recomputed from the outbox). Scenario, worker and checks are the PostgreSQL suite's (``tests/pg``).

``serve``: the whole process (API, scheduler, delivery to the local SendGrid-like server,
its signed event webhook) SIGKILLed at random moments, during start-up too, while a shop
posts purchases, shipments, carts, tickets and deliveries and the provider posts its events;
restarted each time on the same port. Then one clean life drains everything. Every event the
shop was told 202 about is stored, every email is sent and the provider took each exactly
once (a crash between its 202 and our commit is settled from its events, which carry our id
in ``custom_args``, before any resend), no run due is left behind, no cap is broken.

``POSTSALE_LONG=1`` (marker ``reliability_long``): several hundred kills over thousands of
customers (``POSTSALE_LONG_KILLS``/``_CUSTOMERS``, ``POSTSALE_LONG_SERVE_KILLS``/``_CUSTOMERS``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from models import Message
from tests.api.test_serve_process import daytime_zone
from tests.delivery.webhook_kit import Signer
from tests.pg.database import copy_schema, fresh_schema, require_postgres
from tests.pg.scenario import JOURNEYS, NOW, TEMPLATES, context, seed, worker
from tests.reliability.checks import assert_caps, assert_every_event_stored, assert_nothing_due, assert_sent_exactly_once
from tests.reliability.provider import HostileSendGrid, message_ids
from tests.reliability.serving import POSTSALE, ProviderWebhook, ServeProcess, Shop, sendgrid_env
import tests.pg.test_concurrent_dispatch as concurrent
from tests.pg.test_concurrent_dispatch import (_assert_caps_and_holds, _assert_exactly_once,
                                               _assert_nothing_due, _assert_same_outcome, _finish)

LONG = os.environ.get("POSTSALE_LONG") == "1"


def kill_repeatedly(url: str, kills: int, rng: random.Random, batch: int,
                    batch_seconds: float) -> tuple[int, int]:
    """Start a dispatcher and SIGKILL it inside a random batch, ``kills`` times (fewer if the work
    runs out first): after one to three (long runs: two) committed batches, somewhere within the next one
    (``batch_seconds`` is how long one takes). Returns (kills done, batches the victims committed)."""
    done = committed = 0
    while done < kills:
        proc = worker("dispatch", "--batch-size", str(batch), url=url, name=f"k{done}")
        lines: list[dict] = []
        try:
            target = rng.randint(1, 3 if kills <= 50 else 2)    # a long run must not run out of work
            while sum(1 for x in lines if "batch" in x) < target and not any(x.get("done") for x in lines):
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(json.loads(line))
            if not any(x.get("done") for x in lines) and proc.poll() is None:
                time.sleep(rng.uniform(0.0, batch_seconds))
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            lines += [json.loads(x) for x in proc.stdout.read().splitlines() if x.strip()]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != -signal.SIGKILL or any(x.get("done") for x in lines):
            return done, committed                         # it finished before the kill landed
        committed += sum(1 for x in lines if "batch" in x)
        done += 1
    return done, committed


def run_scenario(shared: str, reference: str, *, customers: int, kills: int, seed_value: int,
                 copy) -> None:
    rng = random.Random(seed_value)
    t0 = time.monotonic()
    seed(shared, customers)
    copy()
    expected = _finish(worker("dispatch", "--batch-size", "50", url=reference, name="ref"))
    t1 = time.monotonic()
    batch = 10 if kills > 50 else rng.choice([10, 20])
    per_customer = expected["seconds"] / max(1, expected["customers"])
    done, committed = kill_repeatedly(shared, kills, rng, batch=batch, batch_seconds=per_customer * batch)
    final = _finish(worker("dispatch", "--batch-size", "50", url=shared, name="final"))
    t2 = time.monotonic()
    print(f"\ndispatcher, {customers} customers: seed+reference {t1 - t0:.1f}s; {done} SIGKILLs "
          f"({committed} batches committed by killed dispatchers), clean finish advanced "
          f"{final['customers']} of {expected['customers']} customers, in {t2 - t1:.1f}s")
    assert done >= min(kills, 5), "the dispatcher finished before it could be killed enough"
    engine = create_engine(shared, poolclass=NullPool)
    ref_engine = create_engine(reference, poolclass=NullPool)
    try:
        _assert_same_outcome(engine, ref_engine)
        _assert_exactly_once(engine)
        _assert_nothing_due(engine)
        saved, concurrent.CUSTOMERS = concurrent.CUSTOMERS, customers   # its sanity floor scales
        try:
            _assert_caps_and_holds(engine, context(shared, NOW))
        finally:
            concurrent.CUSTOMERS = saved
    finally:
        engine.dispose()
        ref_engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_repeated_sigkill_of_the_dispatcher_loses_and_repeats_nothing(tmp_path, backend):
    customers, kills = (1_000, 20)
    _run(tmp_path, backend, customers, kills)


def _long(name: str, backend: str, sqlite: int, postgres: int) -> int:
    """A long-run size: ``POSTSALE_LONG_<NAME>``, else the default for the backend (PostgreSQL's
    are smaller: the same paths, and the long run stays within half an hour)."""
    return int(os.environ.get(f"POSTSALE_LONG_{name}", sqlite if backend == "sqlite" else postgres))


@pytest.mark.reliability_long
@pytest.mark.skipif(not LONG, reason="long variant: set POSTSALE_LONG=1")
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_hundreds_of_sigkills_over_thousands_of_customers(tmp_path, backend):
    _run(tmp_path, backend, _long("CUSTOMERS", backend, 5000, 2000), _long("KILLS", backend, 300, 100))


def _run(tmp_path, backend: str, customers: int, kills: int) -> None:
    if backend == "sqlite":
        def copy() -> None:
            shutil.copyfile(tmp_path / "shared.db", tmp_path / "reference.db")
        run_scenario(f"sqlite:///{tmp_path}/shared.db", f"sqlite:///{tmp_path}/reference.db",
                     customers=customers, kills=kills, seed_value=7, copy=copy)
    else:
        require_postgres()
        with fresh_schema("kill") as shared, fresh_schema("kref") as reference:
            run_scenario(shared.url, reference.url, customers=customers, kills=kills, seed_value=7,
                         copy=lambda: copy_schema(shared, reference))


# ------------------------------------------------------------------------------ serve

TOKEN = "kill-serve-token-0123456789"
WINDOW = 15.0          # POSTSALE_DELIVERY_RECONCILE_AFTER: the provider's events land well within it
PROVIDER_DELAY = 0.2   # seconds the provider takes to answer a request


def shop_events(customers: int, rng: random.Random) -> list[dict]:
    """A day's traffic for ``customers``: orders, shipments, carts, tickets, deliveries, shuffled
    (a shop's webhooks arrive out of order); a fifth of them where it is night (quiet hours)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day, night = daytime_zone(now), daytime_zone(now - timedelta(hours=12))
    out = []
    for i in range(customers):
        c = {"id": f"k{i:05d}", "email": f"k{i:05d}@example.com", "name": f"Kim {i}",
             "timezone": night if i % 5 == 4 else day}

        def ev(kind: str, etype: str, seconds: int, **data) -> dict:
            at = (now - timedelta(minutes=5) + timedelta(seconds=seconds)).isoformat()
            return {"id": f"{kind}-{i}", "type": etype, "occurred_at": at, "customer": c, "data": data}

        out.append(ev("o", "order.placed", 0, order_id=f"o-{i}", total=59.0, currency="EUR",
                      items=[{"sku": "KETTLE-1", "name": "Kettle", "category": "kitchen", "quantity": 1, "price": 59.0}]))
        if i % 2 == 0:
            out.append(ev("ship", "order.shipped", 1, order_id=f"o-{i}"))
        if i % 4 == 1:
            out.append(ev("cart", "cart.abandoned", 2, items=[]))
        if i % 10 == 7:
            out.append(ev("ticket", "ticket.opened", 3, subject="help"))
        if i % 3 == 0:
            out.append(ev("deliv", "order.delivered", 4, order_id=f"o-{i}"))
    rng.shuffle(out)
    return out


def batches_of(events: list[dict], rng: random.Random) -> list[list[dict]]:
    out, start = [], 0
    while start < len(events):
        size = rng.randint(1, 20)
        out.append(events[start:start + size])
        start += size
    return out


def _sending(url: str) -> set[str]:
    """Messages left ``sending``: claimed, and the process died before it recorded the outcome."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(Message.id).where(Message.status == "sending")).scalars())
    except (OperationalError, ProgrammingError):    # killed before its first migration committed
        return set()
    finally:
        engine.dispose()


def _count(url: str, query) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(query).scalar() or 0
    except (OperationalError, ProgrammingError):    # killed before its first migration committed
        return 0
    finally:
        engine.dispose()


def kill_serve_repeatedly(tmp_path, url: str, *, customers: int, kills: int, seed_value: int) -> None:
    rng = random.Random(seed_value)
    events = shop_events(customers, rng)
    batches = batches_of(events, rng)
    signer = Signer.generate()
    # The provider takes PROVIDER_DELAY to answer: a kill can land between our claim and our commit.
    with HostileSendGrid(api_key="SG.reliability-key", delay=PROVIDER_DELAY) as fake:
        env = sendgrid_env(tmp_path, fake, signer, database_url=url, journeys=JOURNEYS, templates=TEMPLATES,
                           token=TOKEN, reconcile_after=WINDOW)
        serve = ServeProcess(tmp_path, env)
        # The stream lasts about as long as the kills do (a start costs ~2 s, a life 0-2.5 s).
        shop = Shop(serve, batches, TOKEN, pause=kills * 3.0 / len(batches))
        webhook = ProviderWebhook(serve, fake, signer)
        orphans: dict[str, float] = {}       # left 'sending' by a kill → when
        at_start = in_flight = 0
        t0 = time.monotonic()
        try:
            shop.start()
            webhook.start()
            for n in range(kills):
                moment = rng.random()
                if moment < 0.2:                # during start-up: migrations, the first tick
                    serve.spawn()
                    time.sleep(rng.uniform(0.05, 1.5))
                    at_start += 1
                elif moment < 0.6:              # while a request to the provider is in flight
                    serve.start()
                    arrived = fake.arrivals
                    deadline = time.monotonic() + 3
                    while fake.arrivals == arrived and time.monotonic() < deadline:
                        time.sleep(0.005)
                    time.sleep(rng.uniform(0.0, PROVIDER_DELAY * 1.5))
                    in_flight += 1
                else:                           # anywhere
                    serve.start()
                    time.sleep(rng.uniform(0.0, 2.5))
                serve.kill()
                killed_at = time.time()
                for mid in _sending(url):
                    orphans.setdefault(mid, killed_at)
            t1 = time.monotonic()
            serve.start()                        # the last life: no more kills
            shop.finish(timeout=600)

            def settled() -> bool:
                pending = _count(url, select(func.count()).select_from(Message)
                                 .where(Message.status.in_(("queued", "sending"))))
                return pending == 0 and webhook.caught_up()

            deadline = time.monotonic() + WINDOW + 120
            while not settled():
                assert time.monotonic() < deadline, f"mail still pending after {WINDOW + 120:.0f}s"
                time.sleep(0.5)
            checked_at = datetime.now(timezone.utc)
            time.sleep(2.5)                      # two more ticks: anything due by checked_at is taken
            webhook.halt()
            assert serve.stop() == 0, serve.output()[-3000:]
            t2 = time.monotonic()
        finally:
            shop.halt()
            webhook.halt()
            serve.kill()
    assert not serve.tracebacks(), "\n".join(serve.tracebacks())[:6000]

    engine = create_engine(url, poolclass=NullPool)
    ctx = context(url, NOW)
    try:
        assert_every_event_stored(engine, shop.acknowledged, {e["id"] for e in events})
        delivery = assert_sent_exactly_once(engine, fake)
        waiting = assert_nothing_due(engine, checked_at - timedelta(seconds=1))
        capped = assert_caps(engine, ctx.policy)
        with Session(engine) as session:
            settled = dict(session.execute(select(Message.id, Message.reconcile)
                                           .where(Message.id.in_(list(orphans)))).all())
    finally:
        ctx.engine.dispose()
        engine.dispose()
    # Orphans whose request had reached the provider before the kill: settled from its events.
    taken = {mid for request in fake.accepted for mid in message_ids(request)
             if mid in orphans and request.at < orphans[mid]}
    resent = {mid: settled[mid] for mid in taken if settled[mid] != "evidence"}
    assert not resent, f"orphans the provider had accepted were not settled from its events: {resent}"
    assert taken, "no kill ever left a message 'sending' after the provider took it"
    print(f"\nserve: {customers} customers, {len(events)} events in {len(batches)} batches; {kills} SIGKILLs "
          f"({at_start} during start-up, {in_flight} with a provider request in flight) in {t1 - t0:.0f}s, {len(orphans)} "
          f"messages left 'sending' by a kill ({len(taken)} of them accepted by the provider: settled from its "
          f"events, not resent); "
          f"drained in {t2 - t1:.0f}s. {delivery.messages} emails, {delivery.copies} accepted by the provider, "
          f"{delivery.duplicates} duplicates, {delivery.resent} resent without evidence, {delivery.evidence} "
          f"settled from provider events; {capped} marketing emails within caps; {waiting} runs waiting; "
          f"shop answers {shop.answers}, webhook answers {webhook.answers}")
    assert delivery.duplicates == 0, "the provider's events were posted at once: nothing needed a blind resend"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_repeated_sigkill_of_serve_loses_and_repeats_nothing(tmp_path, backend):
    if not POSTSALE.exists():
        pytest.skip(f"{POSTSALE} is not installed (pip install -e .)")
    _serve_run(tmp_path, backend, customers=300, kills=10)


@pytest.mark.reliability_long
@pytest.mark.skipif(not LONG, reason="long variant: set POSTSALE_LONG=1")
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_hundreds_of_sigkills_of_serve_over_thousands_of_customers(tmp_path, backend):
    _serve_run(tmp_path, backend, customers=_long("SERVE_CUSTOMERS", backend, 2000, 1000),
               kills=_long("SERVE_KILLS", backend, 100, 40))


def _serve_run(tmp_path, backend: str, *, customers: int, kills: int) -> None:
    if backend == "sqlite":
        kill_serve_repeatedly(tmp_path, f"sqlite:///{tmp_path}/serve.db", customers=customers, kills=kills,
                              seed_value=11)
    else:
        require_postgres()
        with fresh_schema("kserve") as schema:
            kill_serve_repeatedly(tmp_path, schema.url, customers=customers, kills=kills, seed_value=11)

"""The database unavailable for a while (issue 9), under a running ``postsale serve`` with a shop
posting purchases and the local SendGrid-like server taking mail and posting its events.

- SQLite: the serve process may no longer write any file (``RLIMIT_FSIZE`` 0 set from outside
  with ``prlimit``: every write to the database or its WAL fails, as on a full or broken disk;
  reads still work). Root can open any file, so permissions cannot make the file unavailable.
- PostgreSQL (``POSTSALE_TEST_PG_URL``): serve reaches the server through a loopback TCP proxy
  the test cuts (open connections reset, new ones refused) and then restores.

While it is down every write answers 503 with ``Retry-After`` (never 500, never a hang):
``POST /events`` and the SendGrid webhook (which then retries, as SendGrid does). Afterwards:
serve is still the same process, every event the shop was told 202 about is stored, the
batches refused during the outage are taken on retry, dispatch and delivery resume, every
email goes out exactly once and no cap is broken.

``POSTSALE_LONG=1``: a one-minute outage instead of six seconds.
"""

from __future__ import annotations

import json
import logging
import os
import random
import resource
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from models import Message
from tests.delivery.webhook_kit import Signer
from tests.pg.database import fresh_schema, require_postgres
from tests.pg.scenario import JOURNEYS, NOW, TEMPLATES, context
from tests.reliability.checks import assert_caps, assert_every_event_stored, assert_nothing_due, assert_sent_exactly_once
from tests.reliability.provider import HostileSendGrid
from tests.reliability.serving import POSTSALE, ProviderWebhook, ServeProcess, Shop, sendgrid_env
from tests.reliability.tcpproxy import CuttableProxy
from tests.reliability.test_process_faults import batches_of, shop_events

LONG = os.environ.get("POSTSALE_LONG") == "1"
OUTAGE = 60.0 if LONG else 6.0
TOKEN = "outage-token-0123456789"
WINDOW = 15.0


@contextmanager
def sqlite_backend(tmp_path) -> Iterator[tuple[str, str, Callable[[ServeProcess], Callable[[], None]]]]:
    def cut(serve: ServeProcess) -> Callable[[], None]:
        soft, hard = resource.prlimit(serve.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(serve.pid, resource.RLIMIT_FSIZE, (0, hard))
        return lambda: resource.prlimit(serve.pid, resource.RLIMIT_FSIZE, (soft, hard))
    url = f"sqlite:///{tmp_path}/outage.db"
    yield url, url, cut


@contextmanager
def postgres_backend(tmp_path) -> Iterator[tuple[str, str, Callable[[ServeProcess], Callable[[], None]]]]:
    require_postgres()
    with fresh_schema("outage") as schema:
        url = make_url(schema.url)
        with CuttableProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
            def cut(_serve: ServeProcess) -> Callable[[], None]:
                proxy.cut()
                return proxy.restore
            yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), schema.url, cut


def _probe_events(n: int) -> list[dict]:
    at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return [{"id": f"probe-{n}-{i}", "type": "order.placed", "occurred_at": at,
             "customer": {"id": f"p{n}-{i}", "email": f"p{n}-{i}@example.com", "timezone": "UTC"},
             "data": {"order_id": f"p{n}-{i}", "total": 5.0}} for i in range(3)]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_database_outage_answers_503_loses_nothing_and_dispatch_resumes(tmp_path, backend):
    if not POSTSALE.exists():
        pytest.skip(f"{POSTSALE} is not installed (pip install -e .)")
    rng = random.Random(5)
    events = shop_events(150, rng)
    batches = batches_of(events, rng)
    signer = Signer.generate()
    make = sqlite_backend if backend == "sqlite" else postgres_backend
    with make(tmp_path) as (url, direct, cut), HostileSendGrid(api_key="SG.outage-key", delay=0.05) as fake:
        env = sendgrid_env(tmp_path, fake, signer, database_url=url, journeys=JOURNEYS, templates=TEMPLATES,
                           token=TOKEN, reconcile_after=WINDOW)
        serve = ServeProcess(tmp_path, env, piped=True)
        shop = Shop(serve, batches, TOKEN, pause=(OUTAGE + 8) / len(batches))
        webhook = ProviderWebhook(serve, fake, signer)
        probes: list[list[dict]] = []
        answers: list[tuple[str, int, float]] = []       # (what, status, seconds) during the outage
        try:
            serve.start()
            shop.start()
            webhook.start()
            time.sleep(3)                                # traffic flowing, mail going out
            before = fake.arrivals
            restore = cut(serve)
            started = time.monotonic()
            try:
                with httpx.Client(base_url=serve.url, timeout=60) as client:
                    while time.monotonic() - started < OUTAGE:
                        batch = _probe_events(len(probes))
                        probes.append(batch)
                        t = time.monotonic()
                        response = client.post("/events", json=batch, headers={"Authorization": f"Bearer {TOKEN}"})
                        answers.append(("events", response.status_code, time.monotonic() - t))
                        if response.status_code == 503:
                            assert response.headers.get("Retry-After"), response.headers
                        body = json.dumps([{"email": "x@example.com", "event": "delivered",
                                            "timestamp": int(time.time()), "sg_event_id": f"probe-{len(probes)}",
                                            "postsale_message_id": "unknown"}]).encode()
                        t = time.monotonic()
                        response = client.post("/webhooks/sendgrid", content=body,
                                               headers=signer.headers(body, int(time.time())))
                        answers.append(("webhook", response.status_code, time.monotonic() - t))
                        if backend == "postgres":
                            t = time.monotonic()
                            response = client.get("/healthz")
                            answers.append(("healthz", response.status_code, time.monotonic() - t))
                        time.sleep(0.5)
            finally:
                restore()
            during = fake.arrivals - before
            with httpx.Client(base_url=serve.url, timeout=60) as client:
                for batch in probes:                     # the shop's retry of what was refused
                    response = client.post("/events", json=batch, headers={"Authorization": f"Bearer {TOKEN}"})
                    assert response.status_code == 202 and response.json()["accepted"] == len(batch), response.text
            shop.finish(timeout=300)

            def settled() -> bool:
                engine = create_engine(direct, poolclass=NullPool)
                try:
                    with engine.connect() as conn:
                        pending = conn.execute(select(func.count()).select_from(Message)
                                               .where(Message.status.in_(("queued", "sending")))).scalar()
                finally:
                    engine.dispose()
                return pending == 0 and webhook.caught_up()

            deadline = time.monotonic() + WINDOW + 180
            while not settled():
                assert time.monotonic() < deadline, "mail still pending long after the database came back"
                time.sleep(0.5)
            checked_at = datetime.now(timezone.utc)
            time.sleep(2.5)
            webhook.halt()
            assert serve.lives == 1 and serve.process.poll() is None, "serve died in the outage"
            assert serve.stop() == 0, serve.output()[-3000:]
        finally:
            shop.halt()
            webhook.halt()
            serve.kill()

        assert not serve.tracebacks(), "\n".join(serve.tracebacks())[:6000]
        statuses = {(what, status) for what, status, _ in answers}
        assert {s for w, s in statuses if w in ("events", "webhook")} == {503}, (sorted(statuses), serve.output()[-4000:])
        if backend == "postgres":
            assert {s for w, s in statuses if w == "healthz"} == {503}, sorted(statuses)
        slowest = max(seconds for _, _, seconds in answers)
        assert 500 not in shop.answers and 500 not in webhook.answers, (shop.answers, webhook.answers)
        engine = create_engine(direct, poolclass=NullPool)
        ctx = context(direct, NOW)
        try:
            probed = {e["id"] for batch in probes for e in batch}
            assert_every_event_stored(engine, shop.acknowledged | probed, {e["id"] for e in events} | probed)
            delivery = assert_sent_exactly_once(engine, fake)
            waiting = assert_nothing_due(engine, checked_at - timedelta(seconds=1))
            capped = assert_caps(engine, ctx.policy)
        finally:
            ctx.engine.dispose()
            engine.dispose()
        print(f"\n{backend} outage of {OUTAGE:.0f}s: {len(answers)} requests during it, all 503 "
              f"(slowest {slowest:.2f}s); {during} provider requests during the outage; shop answers {shop.answers}, "
              f"webhook answers {webhook.answers}; {delivery.messages} emails sent once each "
              f"({delivery.evidence} settled from provider events, {delivery.resent} resent without evidence, "
              f"{delivery.duplicates} duplicates); {capped} marketing emails within caps; {waiting} runs waiting")


# ------------------------------------------------------------ the dispatcher's side, in-process

def test_the_dispatcher_says_once_that_the_database_is_down_and_once_that_it_is_back(tmp_path, monkeypatch, caplog):
    """Each tick and each API-triggered run during an outage fails its batch (rolled back, retried);
    serve's log gets one line when it starts and one when it ends, not a traceback a second."""
    import postsale.serve as serve
    from postsale.delivery.memory import MemoryTransport
    from postsale.settings import DEV_SECRET
    from postsale.store.context import Context
    from postsale.store.dispatch import dispatch as real_dispatch
    from sqlalchemy.exc import OperationalError

    ctx = Context.build(database_url=f"sqlite:///{tmp_path}/d.db", journeys=JOURNEYS, templates=TEMPLATES,
                        secret=DEV_SECRET)
    down = {"now": True}

    def dispatch(ctx, **kwargs):
        if down["now"]:
            raise OperationalError("SELECT ...", {}, ConnectionRefusedError("connection refused"))
        return real_dispatch(ctx, **kwargs)

    monkeypatch.setattr(serve, "dispatch", dispatch)
    dispatcher = serve.Dispatcher(ctx, MemoryTransport(), interval_seconds=3600)
    dispatcher.start(schedule=False)
    try:
        with caplog.at_level(logging.INFO, logger="postsale.serve"):
            for _ in range(3):
                dispatcher.tick()
                dispatcher.trigger(["c-1"])
                assert dispatcher.wait_idle(10)
            assert "OperationalError" in dispatcher.status()["last_error"]
            down["now"] = False
            dispatcher.tick()
            dispatcher.tick()
    finally:
        dispatcher.stop()
        ctx.engine.dispose()
    lines = [r for r in caplog.records if r.name == "postsale.serve" and r.levelno >= logging.WARNING]
    assert [r.getMessage().split(" (")[0] for r in lines] == [
        "database unavailable, dispatch and delivery wait for it", "database reachable again: dispatch and delivery resume"]
    assert not any(r.exc_info for r in lines)
    assert dispatcher.status()["last_error"] is None

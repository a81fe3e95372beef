"""Load soak (issue 9): ``postsale serve`` as a process on loopback, delivering to the local
SendGrid-like server, under a steady, bounded stream of purchases (``RATE`` a second, in
batches of four) while the provider posts its signed events (processed, delivered) for every
mail it accepted, as SendGrid's Event Webhook would.

Measured: serve's RSS (sampled every second) and the latency of ``POST /events`` and of the
webhook, in the first and the last third of the run. Memory and latency must stay flat (RSS
growth within 50% + 30 MiB, p95 within five times the start or 2 s) and nothing may be lost:
every purchase acknowledged and stored, every email sent and accepted by the provider exactly
once, every provider event recorded against its message.

About 30 s in CI; ``POSTSALE_LONG=1`` runs 10 minutes on SQLite (``POSTSALE_SOAK_SECONDS`` to
choose). With ``POSTSALE_TEST_PG_URL`` the short soak also runs on PostgreSQL.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from models import DeliveryEvent, Message
from tests.api.test_serve_process import ROOT, daytime_zone
from tests.delivery.webhook_kit import Signer
from tests.pg.database import fresh_schema, require_postgres
from tests.reliability.checks import assert_every_event_stored, assert_sent_exactly_once
from tests.reliability.provider import HostileSendGrid
from tests.reliability.serving import POSTSALE, ProviderWebhook, ServeProcess, Shop, rss_kib, sendgrid_env

TOKEN = "soak-token-0123456789"
RATE = 8                      # purchases a second, in batches of 4
BATCH = 4
LONG = os.environ.get("POSTSALE_LONG") == "1"
SHORT = 30.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0


def purchases(seconds: float) -> list[list[dict]]:
    now = datetime.now(timezone.utc)
    zone = daytime_zone(now)
    out = []
    for b in range(int(seconds * RATE / BATCH)):
        batch = []
        for n in range(b * BATCH, (b + 1) * BATCH):
            at = (now + timedelta(seconds=n / RATE)).replace(microsecond=0).isoformat()
            batch.append({"id": f"soak-{n}", "type": "order.placed", "occurred_at": at,
                          "customer": {"id": f"c-soak-{n}", "email": f"soak{n}@example.com", "name": f"Soak {n}",
                                       "timezone": zone},
                          "data": {"order_id": f"S{n}", "total": 20.0, "currency": "EUR",
                                   "items": [{"sku": "MUG-1", "name": "Mug", "category": "kitchen", "quantity": 1,
                                              "price": 20.0}]}})
        out.append(batch)
    return out


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(name="rss", daemon=True)
        self.pid, self.samples = pid, []           # (monotonic, KiB)
        self._halted = threading.Event()

    def run(self) -> None:
        while not self._halted.wait(1.0):
            self.samples.append((time.monotonic(), rss_kib(self.pid)))

    def halt(self) -> None:
        self._halted.set()
        self.join(10)


def soak(tmp_path: Path, url: str, seconds: float) -> None:
    batches = purchases(seconds)
    signer = Signer.generate()
    with HostileSendGrid(api_key="SG.soak-key", delay=0.01) as fake:
        env = sendgrid_env(tmp_path, fake, signer, database_url=url, journeys=ROOT / "journeys",
                           templates=ROOT / "templates", token=TOKEN, reconcile_after=120)
        serve = ServeProcess(tmp_path, env)
        serve.start()
        shop = Shop(serve, batches, TOKEN, pause=BATCH / RATE)
        webhook = ProviderWebhook(serve, fake, signer)
        sampler = Sampler(serve.pid)
        try:
            started = time.monotonic()
            sampler.start()
            shop.start()
            webhook.start()
            shop.finish(timeout=seconds * 3 + 60)
            ended = time.monotonic()

            def settled() -> bool:
                engine = create_engine(url, poolclass=NullPool)
                try:
                    with engine.connect() as conn:
                        pending = conn.execute(select(func.count()).select_from(Message)
                                               .where(Message.status.in_(("queued", "sending")))).scalar()
                finally:
                    engine.dispose()
                return pending == 0 and webhook.caught_up()

            deadline = time.monotonic() + 120
            while not settled():
                assert time.monotonic() < deadline, "mail still pending two minutes after the stream ended"
                time.sleep(0.5)
            time.sleep(1.0)                        # the provider's last events land
            webhook.halt()
            sampler.halt()
            assert serve.stop() == 0, serve.output()[-3000:]
        finally:
            shop.halt()
            webhook.halt()
            sampler.halt()
            serve.kill()
    assert not serve.tracebacks(), "\n".join(serve.tracebacks())[:6000]
    assert set(shop.answers) == {202} and set(webhook.answers) == {200}, (shop.answers, webhook.answers)

    engine = create_engine(url, poolclass=NullPool)
    try:
        assert_every_event_stored(engine, shop.acknowledged, {e["id"] for b in batches for e in b})
        delivery = assert_sent_exactly_once(engine, fake)
        with Session(engine) as session:
            recorded = session.scalar(select(func.count()).select_from(DeliveryEvent))
            undelivered = session.scalar(select(func.count()).select_from(Message)
                                         .where(Message.delivery_state.is_(None)))
    finally:
        engine.dispose()
    assert recorded == webhook.posted, f"{webhook.posted} provider events posted, {recorded} recorded"
    assert undelivered == 0, f"{undelivered} messages never took their 'delivered' event"

    third = (ended - started) / 3
    first = lambda items: [v for t, v in items if t < started + third]          # noqa: E731
    last = lambda items: [v for t, v in items if t >= started + 2 * third]      # noqa: E731
    rss_first, rss_last = statistics.median(first(sampler.samples)), statistics.median(last(sampler.samples))
    events_first, events_last = first(shop.latencies), last(shop.latencies)
    hooks_first, hooks_last = first(webhook.latencies), last(webhook.latencies)
    print(f"\nsoak {ended - started:.0f}s on {url.split(':')[0]}: {len(shop.acknowledged)} purchases in "
          f"{len(batches)} posts, {delivery.messages} emails (each accepted once, {delivery.duplicates} duplicates), "
          f"{webhook.posted} provider events recorded; serve RSS median first third {rss_first / 1024:.1f} MiB, "
          f"last third {rss_last / 1024:.1f} MiB (max {max(v for _, v in sampler.samples) / 1024:.1f}); "
          f"POST /events p50/p95 first {pct(events_first, .5):.1f}/{pct(events_first, .95):.1f} ms, "
          f"last {pct(events_last, .5):.1f}/{pct(events_last, .95):.1f} ms; webhook p50/p95 first "
          f"{pct(hooks_first, .5):.1f}/{pct(hooks_first, .95):.1f} ms, last {pct(hooks_last, .5):.1f}/"
          f"{pct(hooks_last, .95):.1f} ms")
    # Generous: an unbounded cache or a leak per request would outgrow this over the run.
    assert rss_last < rss_first * 1.5 + 30 * 1024
    assert pct(events_last, .95) < max(2000.0, 5 * pct(events_first, .95))
    assert pct(hooks_last, .95) < max(2000.0, 5 * pct(hooks_first, .95))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for RSS")
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_serve_soak_memory_and_latency_stay_flat_and_nothing_is_lost(tmp_path, backend):
    if not POSTSALE.exists():
        pytest.skip(f"{POSTSALE} is not installed (pip install -e .)")
    if backend == "sqlite":
        seconds = float(os.environ.get("POSTSALE_SOAK_SECONDS", "600" if LONG else SHORT))
        soak(tmp_path, f"sqlite:///{tmp_path}/soak.db", seconds)
    else:
        require_postgres()
        with fresh_schema("soak") as schema:
            soak(tmp_path, schema.url, SHORT)

"""Load soak (issue 9): ``postsale serve`` as a process on loopback under a steady, bounded
stream of purchases and signed SendGrid delivery events. Memory (RSS) and latency (p50/p95)
in the first and last third are printed; nothing may be lost (every purchase has its
thank-you queued or sent) and memory growth must stay within a generous bound.

About 30 s in CI; ``POSTSALE_LONG=1`` runs 10 minutes (``POSTSALE_SOAK_SECONDS`` to choose).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from models import Message
from tests.api.test_serve_process import POSTSALE, ROOT, daytime_zone, start_serve
from tests.delivery.webhook_kit import Signer

TOKEN = "soak-token-0123456789"
RATE = 8                      # purchases a second, in batches of 4
LONG = os.environ.get("POSTSALE_LONG") == "1"
SECONDS = float(os.environ.get("POSTSALE_SOAK_SECONDS", "600" if LONG else "30"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for RSS")
def test_serve_soak_memory_and_latency_stay_flat_and_nothing_is_lost(tmp_path):
    if not POSTSALE.exists():
        pytest.skip(f"{POSTSALE} is not installed (pip install -e .)")
    signer = Signer.generate()
    db = tmp_path / "soak.db"
    env = {**os.environ, "POSTSALE_DATABASE_URL": f"sqlite:///{db}", "POSTSALE_OUTBOX": str(tmp_path / "outbox"),
           "POSTSALE_JOURNEYS": str(ROOT / "journeys"), "POSTSALE_TEMPLATES": str(ROOT / "templates"),
           "POSTSALE_TRANSPORT": "outbox", "POSTSALE_DISPATCH_INTERVAL": "1", "POSTSALE_API_TOKEN": TOKEN,
           "POSTSALE_SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key, "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_URL", None)
    process, url, log = start_serve(tmp_path, env)
    samples: list[tuple[float, float, int, str]] = []       # (elapsed, latency, rss KiB, kind)
    customers: set[str] = set()
    zone = daytime_zone(datetime.now(timezone.utc))
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            started = time.monotonic()
            n = 0
            while (elapsed := time.monotonic() - started) < SECONDS:
                now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
                batch = []
                for _ in range(RATE // 2):
                    cid = f"c-soak-{n}"
                    batch.append({"id": f"soak-{n}", "type": "order.placed", "occurred_at": now,
                                  "customer": {"id": cid, "email": f"soak{n}@example.com", "name": f"Soak {n}",
                                               "timezone": zone},
                                  "data": {"order_id": f"S{n}", "total": 20.0, "currency": "EUR",
                                           "items": [{"sku": "MUG-1", "name": "Mug", "category": "kitchen",
                                                      "quantity": 1, "price": 20.0}]}})
                    customers.add(cid)
                    n += 1
                t = time.perf_counter()
                response = client.post("/events", json=batch, headers={"Authorization": f"Bearer {TOKEN}"})
                samples.append((elapsed, time.perf_counter() - t, rss_kib(process.pid), "events"))
                assert response.status_code == 202 and response.json()["accepted"] == len(batch), response.text
                # SendGrid-style delivery events (for messages we may or may not know), signed.
                body = json.dumps([{"email": f"soak{n - 1}@example.com", "event": "delivered",
                                    "timestamp": int(time.time()), "sg_event_id": f"ev-{n}",
                                    "sg_message_id": f"x{n}.filter", "postsale_message_id": f"unknown-{n}"}]).encode()
                t = time.perf_counter()
                response = client.post("/webhooks/sendgrid", content=body,
                                       headers=signer.headers(body, int(time.time())))
                samples.append((elapsed, time.perf_counter() - t, rss_kib(process.pid), "webhook"))
                assert response.status_code == 200, response.text
                time.sleep(max(0.0, 0.5 - (time.monotonic() - started - elapsed)))

        def all_thanked() -> bool:
            engine = create_engine(f"sqlite:///{db}", poolclass=NullPool)
            try:
                with Session(engine) as session:
                    got = session.scalar(select(func.count(func.distinct(Message.customer_id)))
                                         .where(Message.customer_id.like("c-soak-%"),
                                                Message.status.in_(("queued", "sending", "sent"))))
            finally:
                engine.dispose()
            return got == len(customers)

        deadline = time.monotonic() + 60
        while not all_thanked():
            assert time.monotonic() < deadline, "some purchases never got their thank-you queued"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = Path(log.name).read_text()
    assert "Traceback" not in output, output[-3000:]

    third = SECONDS / 3
    first = [s for s in samples if s[0] < third]
    last = [s for s in samples if s[0] >= 2 * third]
    rss_first = statistics.median(s[2] for s in first)
    rss_last = statistics.median(s[2] for s in last)
    lat = {name: [s[1] for s in part] for name, part in (("first", first), ("last", last))}
    print(f"\nsoak {SECONDS:.0f}s: {len(customers)} purchases, {len(samples) // 2} webhook posts; "
          f"RSS median first third {rss_first / 1024:.1f} MiB, last third {rss_last / 1024:.1f} MiB; "
          f"latency p50/p95 first {pct(lat['first'], .5):.1f}/{pct(lat['first'], .95):.1f} ms, "
          f"last {pct(lat['last'], .5):.1f}/{pct(lat['last'], .95):.1f} ms")
    # Generous: an unbounded cache or a leak per request would outgrow this over the run.
    assert rss_last < rss_first * 1.5 + 30 * 1024
    assert pct(lat["last"], .95) < max(2000.0, 5 * pct(lat["first"], .95))

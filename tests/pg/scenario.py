"""The concurrency scenario: thousands of customers whose journeys compete at one moment.

Five journeys (``fixture/journeys``) under tight caps (2 marketing emails a week, 12 hours
apart, quiet hours 21:00-08:00 local, marketing held while a ticket is open):

- ``WAVE1`` (50 hours before ``NOW``): every customer orders; one dispatch sends the thank-you
  (or holds it for the customer's morning).
- ``WAVE2`` (an hour before ``NOW``): shipments (transactional), deliveries (a review request),
  abandoned carts (a reminder), tickets (transactional, and a hold on marketing),
  unsubscribes, and second orders that must not re-enter ``welcome`` (reentry: never).
- At ``NOW`` the welcome tips are due too, so most customers have two to four emails due at the
  same moment, and the caps decide which go, in SPEC.md §5 order. Transactional journeys never
  rank below a marketing one here, so at one instant they are always decided first.

``python -m tests.pg.worker`` runs dispatchers (and ingesters) as separate processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from postsale.clock import VirtualClock
from postsale.events import Event
from postsale.settings import DEV_SECRET
from postsale.store.context import Context
from postsale.store.dispatch import dispatch
from postsale.store.ingest import ingest_events
from tests.store.events import event, order

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixture"
JOURNEYS, TEMPLATES = FIXTURE / "journeys", FIXTURE / "templates"

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc)   # the virtual now every dispatcher shares
WAVE1 = NOW - timedelta(hours=50)
WAVE2 = NOW - timedelta(hours=1)
# at NOW it is night in Tokyo only; at WAVE1 in New York and Tokyo (quiet hours hold marketing)
ZONES = ("Europe/Rome", "Europe/London", "America/New_York", "America/Sao_Paulo", "Asia/Tokyo")
INGEST_CHUNK = 500


def customer(i: int) -> dict:
    cid = f"c{i:05d}"
    return {"id": cid, "email": f"{cid}@example.com", "name": f"Customer {i}", "timezone": ZONES[i % len(ZONES)]}


def wave1(n: int) -> list[Event]:
    return [order(f"o1-{i}", WAVE1, customer(i)) for i in range(n)]


def wave2(n: int) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        c = customer(i)
        if i % 2 == 0:
            out.append(event(f"ship-{i}", "order.shipped", WAVE2, c, order_id=f"o1-{i}"))
        if i % 3 == 0:
            out.append(event(f"deliv-{i}", "order.delivered", WAVE2, c, order_id=f"o1-{i}"))
        if i % 4 == 1:
            out.append(event(f"cart-{i}", "cart.abandoned", WAVE2, c, items=[]))
        if i % 10 == 7:
            out.append(event(f"ticket-{i}", "ticket.opened", WAVE2, c, subject="help"))
        if i % 20 == 3:
            out.append(event(f"unsub-{i}", "email.unsubscribed", WAVE2, c))
        if i % 5 == 4:
            out.append(order(f"o2-{i}", WAVE2, c))
    return out


def context(url: str, at: datetime, *, batch_size: int = 500) -> Context:
    return Context.build(database_url=url, journeys=JOURNEYS, templates=TEMPLATES, secret=DEV_SECRET,
                         clock=VirtualClock(at), batch_size=batch_size)


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def seed(url: str, n: int) -> None:
    """Everything up to ``NOW``, in this process: wave 1, its dispatch, wave 2."""
    ctx = context(url, WAVE1)
    try:
        for part in chunks(wave1(n), INGEST_CHUNK):
            ingest_events(ctx, part)
        dispatch(ctx)
        ctx.clock.set(WAVE2)
        for part in chunks(wave2(n), INGEST_CHUNK):
            ingest_events(ctx, part)
    finally:
        ctx.engine.dispose()


def worker(*args: str, url: str, name: str) -> subprocess.Popen:
    """``python -m tests.pg.worker ARGS`` on ``url``, its connections named ``name`` in pg_stat_activity."""
    sep = "&" if "?" in url else "?"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.pg.worker", *args,
                             "--url", f"{url}{sep}application_name={name}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

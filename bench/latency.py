"""Scenario 4 — latency: a purchase posted to ``postsale serve`` → its email handed to the transport.

A real ``postsale serve`` (uvicorn, APScheduler every 5 s, the API's immediate dispatch) with
the SendGrid transport pointed at the fake SendGrid (50 ms a request); 1,000 new customers
each post one ``order.placed``, at 20 a second from one client. The latency of a purchase is
the moment the fake received its ``thank_you`` minus the moment the POST started, both on
this machine's clock. Customers live in a time zone where it is daytime now, so that quiet
hours do not hold the mail (a held email is correct, but it is not latency).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from bench.common import SECRET, context, has_module, percentile, rate

NAME = "latency"
TITLE = "purchase posted to postsale serve → email handed to the transport"
PURCHASES, QUICK_PURCHASES = 1_000, 60
PER_SECOND = 20.0
TARGET_P95 = "≤ 1.0"
ZONES = ("Europe/Rome", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney",
         "Asia/Kolkata", "America/Sao_Paulo", "Pacific/Auckland")
API_KEY = "SG.bench-key"


def daytime_zone(now: datetime) -> str:
    for zone in ZONES:
        if 9 <= now.astimezone(ZoneInfo(zone)).hour < 19:
            return zone
    return "UTC"


def _purchase(i: int, zone: str, at: datetime) -> dict[str, Any]:
    return {"id": f"lat-o{i}", "type": "order.placed", "occurred_at": at.isoformat(),
            "customer": {"id": f"lat-c{i}", "email": f"buyer{i}@example.com", "name": f"Buyer {i}",
                         "timezone": zone, "locale": "en"},
            "data": {"order_id": f"L-{i}", "total": 129.0, "currency": "EUR",
                     "items": [{"sku": "KETTLE-1", "name": "Steel kettle", "category": "kitchen", "quantity": 1,
                                "price": 129.0}]}}


def measure(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    from bench.child import Skip
    if not has_module("postsale.serve") or not has_module("postsale.api.app"):
        raise Skip("postsale serve is not there yet")
    if not (has_module("postsale.delivery.sendgrid") and has_module("tests.fakes_sendgrid")):
        raise Skip("the SendGrid transport or tests/fakes_sendgrid.py is not there yet")
    from bench.server import serve
    from tests.fakes_sendgrid import FakeSendGrid
    ctx = context(params["url"], now=None)
    ctx.engine.dispose()
    count = params["count"]
    zone = daytime_zone(datetime.now(timezone.utc))
    posted: dict[str, float] = {}
    with FakeSendGrid(api_key=API_KEY, delay=0.05) as fake:
        env = {"SENDGRID_API_KEY": API_KEY, "POSTSALE_SENDGRID_HOST": fake.url, "POSTSALE_SECRET": SECRET}
        with serve(params["url"], transport="sendgrid", extra_env=env) as client:
            start = time.time()
            for i in range(count):
                due = start + i / PER_SECOND
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)
                posted[f"buyer{i}@example.com"] = time.time()
                response = client.post("/events", content=json.dumps(_purchase(i, zone, datetime.now(timezone.utc))),
                                       headers={"Content-Type": "application/json"})
                response.raise_for_status()
                if i % 20 == 0:
                    progress(i, count, "posting")
            deadline = time.time() + 60
            while time.time() < deadline and len(_arrivals(fake)) < count:
                progress(len(_arrivals(fake)), count, "waiting for the last emails")
                time.sleep(0.2)
            posting_s = time.time() - start
        arrivals = _arrivals(fake)
    latencies = sorted(arrivals[addr] - posted[addr] for addr in arrivals if addr in posted)
    return {"purchases": count, "delivered": len(latencies), "zone": zone, "rate_per_s": PER_SECOND,
            "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
            "p99_s": percentile(latencies, 99), "max_s": latencies[-1] if latencies else None,
            "emails_per_s": rate(len(latencies), posting_s)}


def _arrivals(fake: Any) -> dict[str, float]:
    """Recipient → when the fake received the request carrying it (first time)."""
    out: dict[str, float] = {}
    for request in fake.accepted:
        for p in request.payload["personalizations"]:
            for to in p["to"]:
                out.setdefault(to["email"], request.at)
    return out


def run(runner: Any) -> None:
    count = QUICK_PURCHASES if runner.quick else PURCHASES
    for backend in runner.backends:
        with backend.database("latency") as url:
            got = runner.child(f"{count:,} purchases · {backend.name}", "bench.latency:measure",
                               {"url": url, "count": count})
        if got is None:
            runner.figure(f"{count:,} purchases", backend.name, "p95", None, note="skipped")
            continue
        case = f"{count:,} purchases at {PER_SECOND:g}/s"
        note = f"{got['delivered']:,} of {got['purchases']:,} emails arrived; customers in {got['zone']}"
        runner.figure(case, backend.name, "p50", got["p50_s"], "s")
        runner.figure(case, backend.name, "p95", got["p95_s"], "s", target=TARGET_P95, note=note)
        runner.figure(case, backend.name, "p99", got["p99_s"], "s")
        runner.figure(case, backend.name, "max", got["max_s"], "s")

"""Scenario 3 — delivery: emails per second through the SendGrid transport to a fake SendGrid.

``tests/fakes_sendgrid.py`` answers ``POST /v3/mail/send`` with 202 and an ``X-Message-Id``
after 50 ms, checking every payload against SendGrid's documented rules. The outbox holds
rendered mail as dispatch writes it (``thank_you``, ~6 KB of HTML); ``deliver`` claims it in
batches and the transport sends with its configured concurrency and keep-alive connections.
Two cases: personalised mail (one request per message: what our templates produce, since
every message carries its own signed links) and identical content (an announcement without
personal details: up to 1,000 personalizations a request).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Callable

from bench.common import SECRET, context, has_module, median, rate, timer
from bench.data import NOW

NAME = "delivery"
TITLE = "emails per second through SendGridTransport to a fake SendGrid (50 ms, 202)"
PERSONAL, QUICK_PERSONAL = 3_000, 200
IDENTICAL, QUICK_IDENTICAL = 20_000, 1_000
DELAY = 0.05
API_KEY = "SG.bench-key"


def _sample(ctx: Any) -> Any:
    from postsale.render.types import RenderRequest
    from postsale.spec.model import Category
    scope = {"customer": {"id": "c-1", "email": "ada@example.com", "name": "Ada Rossi", "timezone": "Europe/Rome",
                          "locale": "en", "attributes": {}},
             "event": {"id": "e-1", "type": "order.placed", "occurred_at": NOW.isoformat(), "data": {}},
             "data": {"order_id": "1001", "total": 147.0, "items": [
                 {"sku": "KETTLE-1", "name": "Steel kettle", "category": "kitchen", "quantity": 1, "price": 129.0},
                 {"sku": "MUG-5", "name": "Stoneware mug", "category": "kitchen", "quantity": 1, "price": 18.0}]},
             "answers": {}, "waited": None, "now": NOW,
             "journey": {"id": "post-purchase", "name": "Thank you", "touchpoint": "immediate_post_sale",
                         "category": "marketing"}}
    return ctx.renderer(RenderRequest(template="thank_you", category=Category.marketing, scope=scope,
                                      message_id="sample", customer_id="c-1", locale="en"))


def _queue(ctx: Any, count: int, *, identical: bool) -> None:
    from sqlalchemy import insert

    from models import Message
    email = _sample(ctx)
    rows = []
    for i in range(count):
        mid = uuid.uuid4().hex
        personal = "" if identical else f" #{i}"
        rows.append({
            "id": mid, "run_id": f"run-{mid}", "step_id": "thank_you", "customer_id": f"c-{i}",
            "journey_id": "post-purchase", "touchpoint": "immediate_post_sale", "category": "marketing",
            "is_survey": False, "template": "thank_you", "to_email": f"customer{i}@example.com",
            "to_name": f"Customer {i}", "from_email": "Acme <hello@acme.example>", "reply_to": "care@acme.example",
            "subject": email.subject + personal, "html": email.html.replace("Ada Rossi", f"Ada Rossi{personal}"),
            "text_body": email.text.replace("Ada Rossi", f"Ada Rossi{personal}"), "headers": dict(email.headers),
            "status": "queued", "created_at": NOW + timedelta(microseconds=i)})
    with ctx.engine.begin() as conn:
        for start in range(0, len(rows), 2_000):
            conn.execute(insert(Message.__table__), rows[start:start + 2_000])


def measure(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    from bench.child import Skip
    if not (has_module("postsale.delivery.sendgrid") and has_module("tests.fakes_sendgrid")):
        raise Skip("postsale.delivery.sendgrid or tests/fakes_sendgrid.py is not there yet")
    from postsale.delivery.sendgrid import SendGridTransport
    from postsale.settings import Settings
    from postsale.store.delivery import deliver
    from tests.fakes_sendgrid import FakeSendGrid
    ctx = context(params["url"])
    _queue(ctx, params["count"], identical=params["identical"])
    settings = Settings(_env_file=None, POSTSALE_SECRET=SECRET)   # the defaults users get
    with FakeSendGrid(api_key=API_KEY, delay=DELAY) as fake:
        transport = SendGridTransport(API_KEY, host=fake.url, timeout=settings.delivery_timeout,
                                      concurrency=settings.sendgrid_concurrency)
        sent = 0
        with timer() as t:
            while True:
                report = deliver(ctx, transport, max_batches=1)
                sent += report.sent
                progress(sent, params["count"], "deliver")
                if report.sent + report.failed + report.retried == 0:
                    break
        transport.close()
        requests, problems = len(fake.received), fake.problems()
    ctx.engine.dispose()
    return {"count": params["count"], "sent": sent, "seconds": round(t["s"], 3), "emails_per_s": rate(sent, t["s"]),
            "requests": requests, "connections": fake.connections, "problems": problems[:5],
            "concurrency": settings.sendgrid_concurrency}


def run(runner: Any) -> None:
    cases = ((False, QUICK_PERSONAL if runner.quick else PERSONAL),
             (True, QUICK_IDENTICAL if runner.quick else IDENTICAL))
    for backend in runner.backends[:1]:           # the provider is the bottleneck, not the database
        for identical, count in cases:
            case = f"{count:,} {'identical' if identical else 'personalised'}"
            results = []
            for n in range(runner.repeats):
                with backend.database("delivery") as url:
                    got = runner.child(f"{case} · {n + 1}", "bench.delivery:measure",
                                       {"url": url, "count": count, "identical": identical})
                if got is None:
                    runner.figure(case, backend.name, "emails/s", None, note="skipped: SendGrid transport not there")
                    return
                results.append(got)
            first = results[0]
            runner.figure(case, backend.name, "emails/s", median([r["emails_per_s"] for r in results]), "/s",
                          samples=[r["emails_per_s"] for r in results],
                          note=f"{first['requests']:,} requests on {first['connections']} connections, "
                               f"concurrency {first['concurrency']}, 50 ms a request"
                               + (f"; payload problems: {first['problems']}" if first["problems"] else ""))

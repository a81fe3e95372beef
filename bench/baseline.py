"""Scenario 8 — the naive baseline: one Prefect flow run per customer, as a tutorial builds it.

``send_welcome(run_id)`` is a flow with three tasks: load the run and its customer, render
the email (the same renderer, built once per process: generous to the baseline), insert the
outbox row and hand it to the memory transport. No caps, no quiet hours, no batching: every
customer it is given gets an email. Prefect 3.8 costs about 1.2 s a flow run here, so 1,000
runs would take ~20 minutes: the benchmark times a sample of 50 flow runs (3 with --quick)
and extrapolates to 1,000, and says so. The temporary Prefect server's start-up is timed
separately and excluded.

Ours: ``dispatch`` + ``deliver`` (memory transport) over 1,000 due customers of the same kind.
The ratio compares emails handed to the transport per second.
"""

from __future__ import annotations

import tempfile
from typing import Any, Callable

from bench.common import DrainingTransport, context, has_module, median, rate, timer, warm
from bench.data import NOW

NAME = "baseline"
TITLE = "our dispatch vs one Prefect flow run per customer"
CUSTOMERS = 1_000
SAMPLE, QUICK_SAMPLE = 50, 3
TARGET_RATIO = "≥ 100"


def ours(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    from postsale.store.delivery import deliver
    from postsale.store.dispatch import dispatch
    ctx = context(params["url"])
    warm(ctx)
    transport = DrainingTransport()
    with timer() as t:
        report = dispatch(ctx)
        delivered = deliver(ctx, transport)
    ctx.engine.dispose()
    return {"runs": report.runs, "sent": delivered.sent, "seconds": round(t["s"], 3),
            "emails_per_s": rate(delivered.sent, t["s"])}


def naive(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    from bench.child import Skip
    if not has_module("prefect"):
        raise Skip("prefect is not installed")
    from prefect import flow, task
    from prefect.testing.utilities import prefect_test_harness
    from sqlalchemy import insert, select

    from models import Customer, Message, Run
    from postsale.delivery.base import OutgoingEmail
    from postsale.engine import message_id_for
    from postsale.render.types import RenderRequest
    from postsale.spec.model import Category

    ctx = context(params["url"])
    transport = DrainingTransport()

    @task
    def load(run_id: str) -> dict[str, Any]:
        with ctx.engine.connect() as conn:
            row = conn.execute(select(Run.id, Run.customer_id, Run.context, Customer.email, Customer.name,
                                      Customer.timezone, Customer.locale, Customer.attributes)
                               .join(Customer, Customer.id == Run.customer_id).where(Run.id == run_id)).one()
        return dict(row._mapping)

    @task
    def render(row: dict[str, Any]) -> dict[str, Any]:
        trigger = (row["context"] or {}).get("trigger") or {}
        customer = {"id": row["customer_id"], "email": row["email"], "name": row["name"],
                    "timezone": row["timezone"], "locale": row["locale"], "attributes": row["attributes"] or {}}
        message_id = message_id_for(row["id"], "welcome")
        email = ctx.renderer(RenderRequest(
            template="thank_you", category=Category.marketing, message_id=message_id, customer_id=row["customer_id"],
            locale=row["locale"], scope={"customer": customer, "event": trigger, "data": trigger.get("data") or {},
                                         "answers": {}, "waited": None, "now": NOW,
                                         "journey": {"id": "post-purchase", "name": "Thank you",
                                                     "touchpoint": "immediate_post_sale", "category": "marketing"}}))
        return {"id": message_id, "run_id": row["id"], "step_id": "welcome", "customer_id": row["customer_id"],
                "journey_id": "post-purchase", "touchpoint": "immediate_post_sale", "category": "marketing",
                "template": "thank_you", "to_email": row["email"], "to_name": row["name"],
                "from_email": ctx.policy.sender.from_, "subject": email.subject, "html": email.html,
                "text_body": email.text, "headers": email.headers, "status": "sent", "created_at": NOW}

    @task
    def send(message: dict[str, Any]) -> None:
        transport.send([OutgoingEmail(
            message_id=message["id"], to_email=message["to_email"], to_name=message["to_name"],
            from_=message["from_email"], reply_to=None, subject=message["subject"], html=message["html"],
            text=message["text_body"], headers=message["headers"], date=NOW)])
        with ctx.engine.begin() as conn:
            conn.execute(insert(Message.__table__), [message])

    @flow(name="send-welcome")
    def send_welcome(run_id: str) -> None:
        send(render(load(run_id)))

    with ctx.engine.connect() as conn:
        run_ids = [r[0] for r in conn.execute(select(Run.id).where(Run.journey_id == "post-purchase",
                                                                   Run.step_index == 0).limit(params["sample"]))]
    progress(0, len(run_ids), "starting a temporary Prefect server")
    with timer() as boot:
        harness = prefect_test_harness(server_startup_timeout=180)
        harness.__enter__()
    try:
        send_welcome(run_ids[0])                 # the first run in a process pays extra: not counted
        with timer() as t:
            for n, run_id in enumerate(run_ids[1:], 1):
                send_welcome(run_id)
                progress(n, len(run_ids) - 1, "one flow run per customer")
    finally:
        harness.__exit__(None, None, None)
    ctx.engine.dispose()
    timed = len(run_ids) - 1
    return {"sample": timed, "seconds": round(t["s"], 3), "per_flow_run_s": round(t["s"] / timed, 3),
            "emails_per_s": rate(timed, t["s"]), "server_start_s": round(boot["s"], 1), "sent": transport.count}


def run(runner: Any) -> None:
    from bench.dispatch import loaded
    sample = QUICK_SAMPLE if runner.quick else SAMPLE
    backend = runner.backends[0]
    results = []
    for n, url in enumerate(loaded(runner, backend, "baseline-ours", total=CUSTOMERS, due=CUSTOMERS)):
        results.append(runner.child(f"our dispatch + deliver · {CUSTOMERS:,} · {n + 1}", "bench.baseline:ours",
                                    {"url": url}))
    our_rate = median([r["emails_per_s"] for r in results])
    runner.figure(f"{CUSTOMERS:,} customers", backend.name, "ours: dispatch + deliver", our_rate, "emails/s",
                  samples=[r["emails_per_s"] for r in results], note=f"{results[0]['sent']:,} emails")
    with backend.database("baseline-naive") as url:
        runner.child("load", "bench.dispatch:setup", {"url": url, "total": sample + 1, "due": sample + 1})
        got = runner.child(f"naive: {sample + 1} flow runs", "bench.baseline:naive", {"url": url, "sample": sample + 1},
                           env={"PREFECT_HOME": tempfile.mkdtemp(prefix="postsale-bench-prefect-")})
    if got is None:
        runner.figure(f"{CUSTOMERS:,} customers", backend.name, "naive flow per customer", None, note="skipped")
        return
    runner.figure(f"{CUSTOMERS:,} customers", backend.name, "naive: per flow run", got["per_flow_run_s"], "s",
                  note=f"measured on {got['sample']} flow runs (the first excluded), extrapolated to {CUSTOMERS:,}; "
                       f"Prefect server start-up {got['server_start_s']} s not counted")
    runner.figure(f"{CUSTOMERS:,} customers", backend.name, "naive: 1,000 customers (extrapolated)",
                  got["per_flow_run_s"] * CUSTOMERS, "s")
    runner.figure(f"{CUSTOMERS:,} customers", backend.name, "ours / naive",
                  our_rate / got["emails_per_s"] if our_rate and got["emails_per_s"] else None, "×",
                  target=TARGET_RATIO)

"""Scenario 5 — incident broadcast: 100,000 purchasers notified, end to end.

100,000 customers each bought the grinder at some point in the last month (and finished or
are waiting in other journeys). ``incident.declared`` for that SKU is ingested (the fan-out
enrolls every purchaser in ``incident-notice``), then exactly those customers are dispatched
in chunks of the batch size and each chunk delivered to the memory transport at once: the
``broadcast`` flow's path (``flows/broadcast.py``) without Prefect around it. The flow adds
one flow run and two task runs a chunk (~18 ms each here: ~7 s over 200 chunks).
"""

from __future__ import annotations

from typing import Any, Callable

from bench.common import DrainingTransport, context, median, rate, timer
from bench.data import NOW

NAME = "broadcast"
TITLE = "incident.declared → every purchaser's notice handed to the transport"
PURCHASERS, QUICK_PURCHASERS = 100_000, 1_000
SKU = "GRINDER-2"


def incident(tag: str) -> dict[str, Any]:
    return {"id": f"{tag}-incident", "type": "incident.declared", "occurred_at": NOW.isoformat(),
            "data": {"incident_id": f"{tag}-INC-1", "skus": [SKU], "product": "Burr coffee grinder",
                     "title": "the burr can loosen",
                     "description": "On some grinders from the October batch, the burr can loosen after a "
                                    "few weeks of use.",
                     "action": "We are posting every owner a fixing kit this week, at our cost.",
                     "advice": "Until it arrives, tighten the top ring by hand before each use."}}


def measure(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    from postsale.store.delivery import deliver
    from postsale.store.dispatch import DispatchReport, dispatch
    from postsale.store.ingest import ingest_items
    ctx = context(params["url"])
    transport = DrainingTransport()
    total = DispatchReport()
    with timer() as whole:
        with timer() as fan:
            progress(0, None, "ingest + fan-out")
            ingested = ingest_items(ctx, [incident("bc")])
        customers = sorted(ingested.customers)
        size = ctx.batch_size
        with timer() as rest:
            for start in range(0, len(customers), size):
                report = dispatch(ctx, customer_ids=customers[start:start + size])
                for key, value in report.actions.items():
                    total.actions[key] += value
                deliver(ctx, transport)
                progress(start + size, len(customers), "dispatch + deliver")
    ctx.engine.dispose()
    notified = transport.count
    return {"purchasers": params["count"], "entered": len(ingested.entered), "notified": notified,
            "actions": dict(total.actions), "fanout_s": round(fan["s"], 3), "dispatch_deliver_s": round(rest["s"], 3),
            "seconds": round(whole["s"], 3), "notices_per_s": rate(notified, whole["s"])}


def run(runner: Any) -> None:
    from bench.dispatch import loaded
    count = QUICK_PURCHASERS if runner.quick else PURCHASERS
    repeats = 1 if count >= 50_000 else runner.repeats
    for backend in runner.backends:
        results = []
        for url in loaded(runner, backend, f"broadcast-{backend.name}", total=count, due=0, tag="bc", bought=SKU,
                          repeats=repeats):
            got = runner.child(f"{count:,} purchasers · {backend.name}", "bench.broadcast:measure",
                               {"url": url, "count": count})
            results.append(got)
        first = results[0]
        case = f"{count:,} purchasers"
        note = (f"{first['notified']:,} notices handed over; {first['entered']:,} runs entered; "
                f"{first['actions']}" + ("" if repeats > 1 else "; one run (too long to repeat)"))
        runner.figure(case, backend.name, "end to end", median([r["seconds"] for r in results]), "s",
                      samples=[r["seconds"] for r in results], note=note)
        runner.figure(case, backend.name, "ingest + fan-out", median([r["fanout_s"] for r in results]), "s")
        runner.figure(case, backend.name, "dispatch + deliver", median([r["dispatch_deliver_s"] for r in results]), "s")
        runner.figure(case, backend.name, "notices/s", median([r["notices_per_s"] for r in results]), "/s")
        runner.figure(case, backend.name, "peak RSS", max(r["rss_peak_mb"] for r in results), "MB")

"""Scenario 1 — ingest: events per second through ``ingest_items`` and through ``POST /events``.

The events are ``postsale.demo_data``'s shop traffic (orders of 1–3 items, shipping, delivery,
support requests and replies, tickets, refunds, one incident that fans out to every grinder
owner), in time order, about 3.5 per customer. The engine function takes them in batches of
500, as the API's chunks do. The API runs in a real ``postsale serve`` (uvicorn, its own
dispatcher dispatching the customers each request touched, memory transport): batches of 500
from one client, then single events from four concurrent clients.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from bench.common import context, has_module, median, rate, timer
from bench.data import chunks, raw_events

NAME = "ingest"
TITLE = "events per second through ingest_items and POST /events"
CUSTOMERS, QUICK_CUSTOMERS = 6_000, 300
SINGLES, QUICK_SINGLES = 2_000, 120
BATCH = 500
CLIENTS = 4
TARGET_ENGINE, TARGET_API = "≥ 10000", "≥ 2000"


def _events(customers: int, tag: str) -> list[dict[str, Any]]:
    return sorted(raw_events(customers=customers, tag=tag), key=lambda e: e["occurred_at"])


# ---------------------------------------------------------------- children

def engine(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    from postsale.store.ingest import ingest_items
    ctx = context(params["url"])
    events = _events(params["customers"], "ing")
    accepted = rejected = entered = 0
    with timer() as t:
        for n, batch in enumerate(chunks(events, BATCH)):
            result = ingest_items(ctx, batch)
            accepted += len(result.accepted)
            rejected += len(result.rejected)
            entered += len(result.entered)
            progress((n + 1) * BATCH, len(events), "ingest_items")
    ctx.engine.dispose()
    return {"events": len(events), "accepted": accepted, "rejected": rejected, "runs_entered": entered,
            "seconds": round(t["s"], 3), "cpu_s": round(t["cpu"], 3), "events_per_s": rate(accepted, t["s"]),
            "events_per_cpu_s": rate(accepted, t["cpu"])}


def api(params: dict[str, Any], progress: Callable) -> dict[str, Any]:
    from bench.child import Skip
    if not has_module("postsale.api.app"):
        raise Skip("postsale.api.app (create_app) is not there yet")
    from bench.server import serve
    ctx = context(params["url"])             # create the schema before serve starts
    ctx.engine.dispose()
    events = _events(params["customers"], "api")
    singles = _events(max(1, params["singles"] // 3), "one")[:params["singles"]]
    out: dict[str, Any] = {}
    with serve(params["url"]) as client:
        accepted = 0
        with timer() as t:
            for n, batch in enumerate(chunks(events, BATCH)):
                response = client.post("/events", content=json.dumps(batch),
                                       headers={"Content-Type": "application/json"})
                response.raise_for_status()
                accepted += response.json()["accepted"]
                progress((n + 1) * BATCH, len(events), "POST /events ×500")
        out.update(batch_events=len(events), batch_accepted=accepted, batch_seconds=round(t["s"], 3),
                   batch_events_per_s=rate(accepted, t["s"]))
        counts = [0] * CLIENTS
        errors: list[str] = []

        def post(worker: int) -> None:
            import httpx
            with httpx.Client(base_url=str(client.base_url), headers=dict(client.headers), timeout=60) as c:
                for event in singles[worker::CLIENTS]:
                    r = c.post("/events", content=json.dumps(event), headers={"Content-Type": "application/json"})
                    if r.status_code != 202:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                        continue
                    counts[worker] += r.json()["accepted"]
                    if worker == 0:
                        progress(sum(counts), len(singles), f"POST /events ×1, {CLIENTS} clients")

        threads = [threading.Thread(target=post, args=(w,)) for w in range(CLIENTS)]
        with timer() as t:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        out.update(single_events=len(singles), single_accepted=sum(counts), single_seconds=round(t["s"], 3),
                   single_events_per_s=rate(sum(counts), t["s"]), errors=errors[:5])
    return out


# ---------------------------------------------------------------- parent

def run(runner: Any) -> None:
    customers = QUICK_CUSTOMERS if runner.quick else CUSTOMERS
    singles = QUICK_SINGLES if runner.quick else SINGLES
    for backend in runner.backends:
        results = []
        for n in range(runner.repeats):
            with backend.database(f"ingest-{n}") as url:
                results.append(runner.child(f"ingest_items · {backend.name} · {n + 1}", "bench.ingest:engine",
                                            {"url": url, "customers": customers}))
        first = results[0]
        runner.figure(f"ingest_items ×{BATCH}", backend.name, "events/s", median([r["events_per_s"] for r in results]),
                      "/s", target=TARGET_ENGINE, samples=[r["events_per_s"] for r in results],
                      note=f"{first['accepted']:,} events, {first['runs_entered']:,} runs entered")
        with backend.database("ingest-api") as url:
            got = runner.child(f"POST /events · {backend.name}", "bench.ingest:api",
                               {"url": url, "customers": customers, "singles": singles})
        if got is None:
            runner.figure("POST /events", backend.name, "events/s", None, note="skipped: API not there")
            continue
        runner.figure(f"POST /events ×{BATCH}", backend.name, "events/s", got["batch_events_per_s"], "/s",
                      target=TARGET_API, note=f"{got['batch_accepted']:,} events, one client, serve dispatching")
        runner.figure(f"POST /events ×1 ({CLIENTS} clients)", backend.name, "events/s",
                      got["single_events_per_s"], "/s", note=f"{got['single_accepted']:,} events"
                      + (f"; errors: {got['errors']}" if got.get("errors") else ""))

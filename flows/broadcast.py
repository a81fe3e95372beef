"""The ``broadcast`` flow: an incident reaches everyone who bought an affected product, first.

It ingests the ``incident.declared`` event (ingest fans it out: every purchaser of its SKUs
enters the journeys it triggers), then dispatches exactly those customers, ``chunk_size`` at a
time, delivering after each chunk so that the first notices leave while the rest are decided.
A ``broadcast-progress`` artifact shows how far it got. The audience is read back from the runs
the event started, so a rerun, or an event the API already ingested, still finishes the job.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from flows.ops import NoticeLog, add_run_tags
from flows.runtime import runtime
from flows.summary import acted, merge, run_tags
from flows.tasks import broadcast_audience, deliver_outbox, dispatch_customers, ingest_batch
from postsale.errors import InvalidEvent
from postsale.events import BROADCAST_TYPES
from postsale.store.dispatch import DispatchReport

PROGRESS_KEY = "broadcast-progress"


def _run_name() -> str:
    event = (flow_run.parameters or {}).get("event") or {}
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    return f"broadcast {event.get('type', '?')} {data.get('incident_id') or event.get('id', '?')}"


@flow(name="broadcast", flow_run_name=_run_name)
def broadcast(event: dict[str, Any], chunk_size: int | None = None, log_limit: int = 1000) -> dict[str, Any]:
    """Ingest an incident event and dispatch every customer it concerns, chunk by chunk."""
    logger = get_run_logger()
    if event.get("type") not in BROADCAST_TYPES:
        raise InvalidEvent("type", f"a broadcast takes {' or '.join(sorted(BROADCAST_TYPES))}, not {event.get('type')!r}")
    with runtime() as rt:
        ctx = rt.ctx
        ingested = ingest_batch(ctx, [event])
        if ingested.rejected:
            bad = ingested.rejected[0]
            raise InvalidEvent(bad.field, bad.reason, event_id=bad.event_id)
        if ingested.duplicates:
            logger.info("event %s was already ingested: finishing its dispatch", event["id"])
        customers = sorted(set(broadcast_audience(ctx, str(event["id"]))) | ingested.customers)
        size = max(1, chunk_size or ctx.batch_size)
        logger.info("%d customers to reach, %d at a time", len(customers), size)
        progress = create_progress_artifact(0.0 if customers else 100.0, key=PROGRESS_KEY,
                                            description=f"{event['id']}: 0 of {len(customers)} customers")
        total, sent, notices = DispatchReport(), 0, NoticeLog(logger, log_limit)
        for start in range(0, len(customers), size):
            chunk = customers[start:start + size]
            report = dispatch_customers(ctx, chunk)
            merge(total, report)
            notices.log(report.notices)
            sent += deliver_outbox(ctx, rt.transport()).sent
            done = start + len(chunk)
            update_progress_artifact(progress, 100.0 * done / len(customers),
                                     description=f"{event['id']}: {done} of {len(customers)} customers")
        notices.close()
        touchpoints = {j.id: j.touchpoint.value for j in ctx.catalog.journeys.values()}
    add_run_tags(run_tags(acted(total), touchpoints))
    logger.info("reached %d customers: %s; delivered %d", len(customers), dict(total.actions), sent)
    return {"customers": len(customers), "entered": len(ingested.entered), "actions": dict(total.actions),
            "delivered": sent}

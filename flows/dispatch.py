"""The ``dispatch`` flow: advance every due customer, batch by batch, then deliver the outbox.

One flow run moves every customer due at its start: a ``dispatch-batch`` task claims and
advances ``batch_size`` customers in one transaction, again and again until nothing is due.
Once the queue is drained, runs that became due meanwhile (a journey starting another) get at
most ``DRAIN_ROUNDS`` more batches; whatever is due after that waits for the next run, a minute
later. The run is named after its minute (``dispatch 2026-11-23T10:00Z``), tagged with the
touchpoints and journeys that acted, logs each hold, skip and alert with its reason, and leaves
a ``dispatch-summary`` table: journey × sent / held / skipped / suppressed / failed.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows import runtime as runtime_mod
from flows.ops import NoticeLog, add_run_tags
from flows.runtime import runtime
from flows.summary import (acted, dispatch_description, dispatch_rows, merge, run_tags, stamp)
from flows.tasks import deliver_outbox, dispatch_batch, failed_by_journey
from postsale.store.delivery import DeliveryReport
from postsale.store.dispatch import DispatchReport

DRAIN_ROUNDS = 3
SUMMARY_KEY = "dispatch-summary"


def _run_name() -> str:
    return f"dispatch {stamp(runtime_mod.clock().now())}"


@flow(name="dispatch", flow_run_name=_run_name)
def dispatch(max_batches: int = 1000, deliver: bool = True, log_limit: int = 1000) -> dict[str, Any]:
    """Advance every due customer once, in batches; then hand the outbox to the transport."""
    logger = get_run_logger()
    notices = NoticeLog(logger, log_limit)
    total = DispatchReport()
    with runtime() as rt:
        ctx = rt.ctx
        started = ctx.clock.now()
        drained = 0
        for number in range(1, max_batches + 1):
            report = dispatch_batch(ctx, number)
            if not report.batches:
                break
            merge(total, report)
            notices.log(report.notices)
            if report.customers < ctx.batch_size:
                drained += 1
                if drained >= DRAIN_ROUNDS:
                    break
        else:
            logger.warning("stopped after %d batches: the customers still due wait for the next run", max_batches)
        notices.close()
        delivery = deliver_outbox(ctx, rt.transport()) if deliver else DeliveryReport()
        failed = failed_by_journey(ctx, delivery) if delivery.failed else {}
        touchpoints = {j.id: j.touchpoint.value for j in ctx.catalog.journeys.values()}
    if delivery.failed:
        logger.error("%d messages failed for good: %s", delivery.failed, "; ".join(delivery.errors[:5]))
    create_table_artifact(dispatch_rows(total, failed, touchpoints), key=SUMMARY_KEY,
                          description=dispatch_description(total, delivery, started))
    add_run_tags(run_tags(set(acted(total)) | (set(failed) - {"-"}), touchpoints))
    logger.info("%s", dispatch_description(total, delivery, started))
    return {"dispatch": total.to_json(), "delivery": delivery.to_json()}

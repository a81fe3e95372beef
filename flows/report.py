"""The ``daily-report`` flow: a markdown artifact (``daily-report``) on the last ``period``.

Per journey: entered, sent, held, skipped by reason, exited, survey scores; then the SLA
alerts, the ``alert`` rows of the timeline in the period. The same numbers as
``postsale report``, where operations already look: the Prefect UI.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows import runtime as runtime_mod
from flows.runtime import runtime
from flows.summary import daily_markdown, stamp
from flows.tasks import alerts_since, journey_report
from postsale.durations import parse_duration

REPORT_KEY = "daily-report"


def _run_name() -> str:
    return f"daily report {stamp(runtime_mod.clock().now())[:10]}"


@flow(name="daily-report", flow_run_name=_run_name)
def daily_report(period: str = "24h") -> dict[str, Any]:
    """Report the last ``period`` (``24h``, ``7d``) per journey, with survey scores and alerts."""
    span = parse_duration(period)
    with runtime() as rt:
        until = rt.ctx.clock.now()
        since = until - span
        reports = journey_report(rt.ctx, since)
        alerts = alerts_since(rt.ctx, since, until)
        touchpoints = {j.id: j.touchpoint.value for j in rt.ctx.catalog.journeys.values()}
    markdown = daily_markdown(reports, alerts, since=since, until=until, touchpoints=touchpoints)
    create_markdown_artifact(markdown, key=REPORT_KEY,
                             description=f"postsale {stamp(since)} → {stamp(until)}: "
                                         f"{len(reports)} journeys, {len(alerts)} alerts")
    get_run_logger().info("reported %d journeys and %d alerts since %s", len(reports), len(alerts), stamp(since))
    return {"since": since.isoformat(), "until": until.isoformat(),
            "journeys": [r.to_json() for r in reports], "alerts": len(alerts)}

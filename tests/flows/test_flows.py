"""Each flow once under the session's Prefect test server, checked through the Prefect client:
the flow run (name, tags), its task runs, its artifacts by key and its logs by level."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from flows.broadcast import broadcast
from flows.dispatch import dispatch
from flows.ingest import ingest
from flows.report import daily_report
from postsale.store.dispatch import dispatch as dispatch_now
from postsale.store.ingest import ingest_items
from tests.flows.support import (T0, artifacts, customer, event, flow_run, logs, order, run_id,
                                 task_runs)

pytestmark = pytest.mark.prefect


def _table(artifact) -> list[dict]:
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    return data


def _activity(ctx) -> None:
    """Four customers due at T0: one thanked, one held by quiet hours, one unsubscribed, one
    support request that nobody answers within 24 hours."""
    result = ingest_items(ctx, [
        order("o-1", T0, customer("c-1")),
        order("o-2", T0, customer("c-2", "America/Los_Angeles")),
        event("u-3", "email.unsubscribed", T0, customer("c-3")),
        order("o-3", T0, customer("c-3")),
        event("s-4", "support.requested", T0, customer("c-4"), request_id="r-9"),
    ])
    assert not result.rejected


def test_ingest_counts_and_logs_rejections_with_their_field(runtime):
    ctx, _ = runtime
    state = ingest(events=[order("o-1", T0, customer("c-1")), order("o-2", T0, customer("c-2")),
                           {"id": "bad-1", "type": "order.placed", "occurred_at": T0.isoformat(),
                            "customer": {"id": "c-9"}},
                           order("o-1", T0, customer("c-1"))],
                   batch_size=2, return_state=True)
    assert state.is_completed()
    assert state.result() == {"accepted": 2, "duplicate": 1, "rejected": 1, "entered": 2, "customers": 2,
                              "rejections": [{"index": 2, "id": "bad-1", "field": "customer.email",
                                              "reason": "required"}]}
    fid = run_id(state)
    assert flow_run(fid).name == "ingest 4 events"
    assert sorted(t.name for t in task_runs(fid, at_least=2)) == ["ingest 2 events", "ingest 2 events"]
    warnings = [log for log in logs(fid, containing="rejected event") if log.level == logging.WARNING]
    assert [log.message for log in warnings] == ["rejected event #2 (id bad-1): customer.email: required"]


def test_ingest_takes_the_one_event_a_trigger_passes(runtime):
    state = ingest(event=order("o-7", T0, customer("c-7")), event_id="o-7", return_state=True)
    assert state.result()["accepted"] == 1
    assert flow_run(run_id(state)).name == "ingest order.placed o-7"


def test_ingest_reads_a_file_for_imports_too_big_for_parameters(runtime, tmp_path):
    lines = [json.dumps(order(f"o-{i}", T0, customer(f"c-{i}"))) for i in range(3)] + ["{not json"]
    (tmp_path / "orders.ndjson").write_text("\n".join(lines))
    state = ingest(path=str(tmp_path / "orders.ndjson"), return_state=True)
    out = state.result()
    assert (out["accepted"], out["rejected"]) == (3, 1)
    assert out["rejections"][0]["field"] == "json"
    assert flow_run(run_id(state)).name == "ingest orders.ndjson"


def test_dispatch_batches_logs_decisions_and_leaves_a_summary_table(runtime):
    ctx, transport = runtime
    _activity(ctx)
    transport.fail_next(1, transient=False, error="550 mailbox unavailable")

    first = dispatch(return_state=True)
    assert first.is_completed()
    out = first.result()
    assert out["dispatch"]["actions"] == {"sent": 2, "held": 1, "suppressed": 1}
    assert out["delivery"]["sent"] == 1 and out["delivery"]["failed"] == 1

    fid = run_id(first)
    run = flow_run(fid)
    assert run.name == "dispatch 2026-11-02T09:00Z"
    assert {"immediate_post_sale", "ongoing_care", "journey:post-purchase", "journey:support-ack"} <= set(run.tags)
    names = sorted(t.name for t in task_runs(fid, at_least=5))
    # batch_size 2: two full batches, a third finds nothing due; then delivery
    assert names == ["deliver", "dispatch batch 1", "dispatch batch 2", "dispatch batch 3", "failed-by-journey"]

    [summary] = artifacts(fid, "dispatch-summary")
    assert summary.type == "table"
    rows = {row["journey"]: row for row in _table(summary)}
    assert set(rows) >= set(ctx.catalog.journeys)        # every journey has a row, even a quiet one
    assert rows["post-purchase"] | {"failed": 0} == {
        "journey": "post-purchase", "touchpoint": "immediate_post_sale", "sent": 1, "held": 1, "skipped": 0,
        "suppressed": 1, "failed": 0, "entered": 0, "exited": 0, "alerts": 0}
    assert rows["support-ack"]["sent"] == 1
    failed = {journey: row["failed"] for journey, row in rows.items() if row["failed"]}
    assert len(failed) == 1 and set(failed) <= {"post-purchase", "support-ack"}   # the first mail out failed
    assert "delivered 1" in summary.description and "failed 1" in summary.description

    info = {log.message for log in logs(fid, containing="suppressed: unsubscribed") if log.level == logging.INFO}
    assert "c-2 post-purchase/thank_you held: quiet hours 21:00-08:00" in info
    assert "c-3 post-purchase/thank_you suppressed: unsubscribed" in info

    ctx.clock.advance(hours=25)   # the support request is still unanswered: an alert
    second = dispatch(return_state=True)
    sid = run_id(second)
    assert flow_run(sid).name == "dispatch 2026-11-03T10:00Z"
    warnings = [log.message for log in logs(sid, containing="ALERT") if log.level == logging.WARNING]
    assert warnings == ["ALERT support-ack: No reply within 24h to c-4@example.com (request r-9)"]
    [summary] = artifacts(sid, "dispatch-summary")
    assert {row["journey"]: row["alerts"] for row in _table(summary)}["support-ack"] == 1


def test_broadcast_reaches_every_purchaser_in_chunks_with_progress(runtime):
    ctx, transport = runtime
    before = T0 - timedelta(days=1)
    ingest_items(ctx, [order("o-1", before, customer("c-1")),
                       order("o-2", before, customer("c-2", "America/Los_Angeles")),
                       order("o-3", before, customer("c-3")),
                       order("o-4", before, customer("c-4"), sku="MUG-2")])
    dispatch_now(ctx)   # their thank-you mails are decided already: only the notice is left
    incident = event("inc-1", "incident.declared", T0, incident_id="inc-7", skus=["KETTLE-1"],
                     product="Steel kettle", title="the lid seal can loosen",
                     description="On some kettles the seal of the lid can loosen.",
                     action="We are sending every owner a new seal.",
                     advice="Fill the kettle only to the MAX line.",
                     purchased_after="2026-10-01T00:00:00+00:00")

    state = broadcast(event=incident, chunk_size=2, return_state=True)
    assert state.is_completed()
    assert state.result()["customers"] == 3
    notices = sorted(m.to_email for m in transport.sent if m.categories[0] == "incident-notice")
    assert notices == ["c-1@example.com", "c-2@example.com", "c-3@example.com"]   # never c-4

    fid = run_id(state)
    run = flow_run(fid)
    assert run.name == "broadcast incident.declared inc-7"
    assert {"issue_resolution", "journey:incident-notice"} <= set(run.tags)
    names = sorted(t.name for t in task_runs(fid, at_least=6))
    assert names.count("dispatch 2 customers") == 1 and names.count("dispatch 1 customers") == 1
    assert names.count("deliver") == 2 and "ingest 1 events" in names
    [progress] = artifacts(fid, "broadcast-progress")
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert "3 of 3 customers" in progress.description


def test_broadcast_refuses_an_event_that_is_not_an_incident(runtime):
    state = broadcast(event=order("o-1", T0, customer("c-1")), return_state=True)
    assert state.is_failed()
    assert "type" in state.message


def test_daily_report_is_a_markdown_artifact_with_scores_and_sla_alerts(runtime):
    ctx, _ = runtime
    _activity(ctx)
    dispatch_now(ctx)
    ctx.clock.advance(hours=25)
    dispatch_now(ctx)   # the unanswered support request raises its alert
    ingest_items(ctx, [event("a-1", "survey.answered", ctx.clock.now(), customer("c-1"),
                             survey="csat", journey="care-check-in", answers={"score": 5})])

    state = daily_report(period="7d", return_state=True)
    assert state.is_completed()
    fid = run_id(state)
    assert flow_run(fid).name == "daily report 2026-11-03"
    [report] = artifacts(fid, "daily-report")
    assert report.type == "markdown"
    text = report.data
    assert "| post-purchase | immediate_post_sale | 3 | 1 | 2 | 0 | 1 | 0 | 0 |" in text
    assert "| post-purchase | unsubscribed | 1 |" in text
    assert "| care-check-in | csat.score | 1 | 5.00 |" in text
    assert "## SLA alerts (1)" in text
    assert "No reply within 24h to c-4@example.com (request r-9)" in text
    assert {t.name for t in task_runs(fid, at_least=2)} == {"journey-report", "alerts-since"}

"""The outbox state machine with a scripted transport: what each kind of outcome does to a row."""

from __future__ import annotations

from datetime import timedelta
from typing import Sequence

from sqlmodel import Session

from models import DeliveryEvent
from postsale.delivery.base import OutgoingEmail, SendResult
from postsale.delivery.outcomes import uncertain
from postsale.store.delivery import deliver
from tests.delivery.conftest import queue_messages, rows


class Scripted:
    """Answers from a script (one outcome maker per call), then ok; records every message sent."""
    name = "scripted"

    def __init__(self, *script) -> None:
        self.script = list(script)
        self.sent: list[str] = []

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        out = []
        for email in batch:
            self.sent.append(email.message_id)
            make = self.script.pop(0) if self.script else None
            out.append(make(email.message_id) if make else SendResult(email.message_id, True, provider_id="p-1"))
        return out


def _timeout(mid):
    return uncertain(mid, "SendGrid timed out after 10s; it may have accepted the message")


def test_an_uncertain_send_waits_the_window_and_evidence_prevents_the_resend(ctx):
    (mid,) = queue_messages(ctx, 1)
    transport = Scripted(_timeout)
    deliver(ctx, transport, reconcile_after=600)
    row = rows(ctx)[mid]
    assert (row.status, row.reconcile) == ("queued", "uncertain")
    assert abs((row.next_attempt_at.replace(tzinfo=ctx.clock.now().tzinfo) - ctx.clock.now()).total_seconds() - 600) < 1
    with Session(ctx.engine) as s:      # SendGrid's processed event arrives (stored by the webhook path)
        s.add(DeliveryEvent(dedupe_key="sg:abc", message_id=mid, event_type="processed",
                            payload={"sg_message_id": "XID.filter-1"}, occurred_at=ctx.clock.now()))
        s.commit()
    ctx.clock.advance(seconds=601)
    report = deliver(ctx, transport, reconcile_after=600)
    row = rows(ctx)[mid]
    assert report.reconciled == 1 and transport.sent == [mid]            # never sent twice
    assert (row.status, row.reconcile, row.provider_id) == ("sent", "evidence", "XID")


def test_repeated_timeouts_keep_delaying_rather_than_failing(ctx):
    (mid,) = queue_messages(ctx, 1)
    transport = Scripted(_timeout, _timeout, _timeout)
    for _ in range(4):
        deliver(ctx, transport, reconcile_after=60)
        ctx.clock.advance(seconds=61)
    row = rows(ctx)[mid]
    assert (row.status, row.reconcile, row.attempts) == ("sent", "resent", 4)


def test_transient_failures_retry_until_the_age_limit_then_fail(ctx):
    (mid,) = queue_messages(ctx, 1)
    down = lambda m: SendResult(m, False, error="SendGrid 503: service unavailable", transient=True)  # noqa: E731
    transport = Scripted(*[down] * 100)
    for _ in range(30):
        deliver(ctx, transport, give_up_after=timedelta(hours=6))
        ctx.clock.advance(hours=1)
    row = rows(ctx)[mid]
    assert row.status == "failed" and row.error == "SendGrid 503: service unavailable"
    assert 6 <= row.attempts <= 12          # backoff 30 s doubling to 1 h over six hours


def test_retry_after_is_never_shortened(ctx):
    (mid,) = queue_messages(ctx, 1)
    deliver(ctx, Scripted(lambda m: SendResult(m, False, error="429", transient=True, retry_after=120)))
    row = rows(ctx)[mid]
    delay = (row.next_attempt_at.replace(tzinfo=ctx.clock.now().tzinfo) - ctx.clock.now()).total_seconds()
    assert 120 <= delay <= 132


def test_a_transport_that_raises_leaves_rows_uncertain_not_sending(ctx):
    ids = queue_messages(ctx, 2)

    class Broken:
        name = "broken"

        def send(self, batch):
            raise RuntimeError("boom")

    report = deliver(ctx, Broken())
    assert report.retried == 2
    assert {(m.status, m.reconcile) for m in rows(ctx).values()} == {("queued", "uncertain")}
    assert all("transport raised RuntimeError: boom" in rows(ctx)[i].error for i in ids)


def test_a_permanent_failure_is_final(ctx):
    (mid,) = queue_messages(ctx, 1)
    transport = Scripted(lambda m: SendResult(m, False, error="SendGrid 413: content too large"))
    assert deliver(ctx, transport).failed == 1
    ctx.clock.advance(days=2)
    assert deliver(ctx, transport).sent == 0 and transport.sent == [mid]

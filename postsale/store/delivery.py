"""Delivery: the outbox state machine (queued → sending → sent | failed).

Rows are marked ``sending`` and committed *before* the provider is called, so a crash between
the provider's acceptance and our commit leaves evidence (a ``sending`` row) rather than a
silent resend. A transient failure (429, 5xx, timeout) puts the row back to ``queued`` with a
later ``next_attempt_at``; a permanent one marks it ``failed`` with the provider's reason.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlmodel import Session

from models import Message
from postsale.delivery.base import OutgoingEmail, SendResult, Transport
from postsale.store.context import Context
from postsale.store.runs import aware

log = logging.getLogger("postsale.delivery")

MAX_ATTEMPTS = 8


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"sent": self.sent, "failed": self.failed, "retried": self.retried, "errors": self.errors[:20]}


def outgoing(row: Message) -> OutgoingEmail:
    return OutgoingEmail(
        message_id=row.id, to_email=row.to_email or "", to_name=row.to_name, from_=row.from_email,
        reply_to=row.reply_to, subject=row.subject, html=row.html or "", text=row.text_body or "",
        headers=dict(row.headers or {}), date=aware(row.created_at),
        categories=tuple(c for c in (row.journey_id, row.touchpoint) if c),
        custom_args={"postsale_message_id": row.id, "journey": row.journey_id, "step": row.step_id})


def deliver(ctx: Context, transport: Transport, *, batch_size: int = 200, max_batches: int | None = None) -> DeliveryReport:
    """Hand every due queued message to the transport, batch by batch."""
    report = DeliveryReport()
    batches = 0
    while max_batches is None or batches < max_batches:
        now = ctx.clock.now()
        claimed = _claim(ctx, now, batch_size)
        if not claimed:
            break
        batches += 1
        results = {r.message_id: r for r in transport.send([outgoing(m) for m in claimed])}
        _record(ctx, claimed, results, ctx.clock.now(), report)
    return report


def _claim(ctx: Context, now: datetime, limit: int) -> list[Message]:
    with Session(ctx.engine, expire_on_commit=False) as session:
        query = (select(Message).where(Message.status == "queued",
                                       or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now))
                 .order_by(Message.created_at).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(session.scalars(query))
        for row in rows:
            row.status, row.sending_at, row.attempts = "sending", now, row.attempts + 1
        session.commit()
        return rows


def _record(ctx: Context, claimed: list[Message], results: dict[str, SendResult], now: datetime,
            report: DeliveryReport) -> None:
    with Session(ctx.engine) as session:
        for row in claimed:
            result = results.get(row.id) or SendResult(row.id, False, error="no result from transport", transient=True)
            values: dict = {}
            if result.ok:
                values = {"status": "sent", "provider_id": result.provider_id, "sent_at": now, "error": None}
                report.sent += 1
            elif result.transient and row.attempts < MAX_ATTEMPTS:
                delay = result.retry_after or min(3600.0, 30.0 * 2 ** (row.attempts - 1)) * random.uniform(0.8, 1.2)
                values = {"status": "queued", "next_attempt_at": now + timedelta(seconds=delay), "error": result.error}
                report.retried += 1
            else:
                values = {"status": "failed", "error": result.error}
                report.failed += 1
                report.errors.append(f"{row.id}: {result.error}")
                log.error("message %s to journey %s failed: %s", row.id, row.journey_id, result.error)
            session.execute(update(Message).where(Message.id == row.id, Message.status == "sending").values(**values))
        session.commit()

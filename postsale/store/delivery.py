"""Delivery: the outbox state machine (queued → sending → sent | failed).

    queued ──claim (committed)──► sending ──provider ok──► sent (provider id)
       ▲                            │ ├── permanent refusal (4xx) ──► failed (provider's reason)
       │                            │ ├── transient (429, 5xx, refused connection) ──► queued, later
       │                            │ └── uncertain (timeout, dropped mid-request) ──► queued after
       │                            │       the reconcile window, ``reconcile='uncertain'``
       └── stale sweep ◄────────────┘   (process killed between the provider call and our commit)

Guarantee (SPEC.md §9.2 and §9.7), exactly:

1. A row is marked ``sending`` and committed *before* the provider is called, and it leaves
   ``sending`` only by our commit of the provider's answer, by provider evidence, or by the
   stale sweep below. Rows are never deleted: every message handed to a provider stays in the
   log as ``sent``, ``failed`` (with the reason) or ``queued`` (with the next attempt time).
2. A refusal the provider gave for sure (429, 5xx, a refused connection, a 400) never sends the
   email: 429 waits for ``X-RateLimit-Reset``, the others back off exponentially with jitter
   (30 s doubling to 1 h, ×0.8-1.2); a permanent refusal fails the row with the provider's text
   and is never retried. Transient failures are retried until the message is
   ``give_up_after`` old (default 3 days), then failed: an outage or rate limit delays mail.
3. An attempt whose outcome is unknown — the process died after the call, or the call timed
   out or lost its connection after the request went out — is never resent blindly at once.
   Its fate is taken from the provider's events, which carry our id in ``custom_args``: any
   stored ``DeliveryEvent`` for the message (processed, delivered, deferred, bounce, ...) marks
   it ``sent`` with ``reconcile='evidence'``, whether it arrives through the webhook (at once)
   or is found by the sweep. With no evidence ``reconcile_after`` (default 15 min) after the
   attempt, the message is resent, flagged ``reconcile='resent'`` with a note in ``error``.
   A row orphaned by a crash is resent once: if the process dies again during that resend (a
   message that kills its sender twice), the row is failed with "fate unknown" rather than
   risking a third copy; a late provider event still marks it sent. A timeout is handled the
   same way each time it happens (wait, look for evidence, resend flagged), so a provider
   that hangs for hours delays mail rather than failing it.
4. So a recipient gets two copies only when the provider accepted an attempt whose answer we
   lost *and* reported no event for it within ``reconcile_after`` (webhook not configured or
   delayed; SMTP, which reports no events). Every such message is flagged ``resent``.
5. ``reconcile_after`` must exceed the longest time a live delivery holds a row in ``sending``
   (about ``timeout × ceil(batch / concurrency)``: 250 s for 200 rows, 8 threads, 10 s), or a
   slow live batch could be taken for a crashed one.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlmodel import Session

from models import DeliveryEvent as DeliveryEventRow
from models import Message
from postsale.delivery.base import OutgoingEmail, SendResult, Transport
from postsale.delivery.outcomes import is_uncertain
from postsale.store.context import Context
from postsale.store.runs import aware

log = logging.getLogger("postsale.delivery")

MAX_ATTEMPTS = 100                         # a safety valve; the age limit is what normally ends retries
RECONCILE_AFTER = timedelta(minutes=15)
GIVE_UP_AFTER = timedelta(days=3)
BACKOFF_BASE, BACKOFF_CAP = 30.0, 3600.0


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    errors: list[str] = field(default_factory=list)
    reconciled: int = 0          # settled as sent from provider evidence, without a resend
    resent: int = 0              # resent once with no evidence (a duplicate is possible)

    def to_json(self) -> dict:
        return {"sent": self.sent, "failed": self.failed, "retried": self.retried,
                "reconciled": self.reconciled, "resent": self.resent, "errors": self.errors[:20]}


def outgoing(row: Message) -> OutgoingEmail:
    return OutgoingEmail(
        message_id=row.id, to_email=row.to_email or "", to_name=row.to_name, from_=row.from_email,
        reply_to=row.reply_to, subject=row.subject, html=row.html or "", text=row.text_body or "",
        headers=dict(row.headers or {}), date=aware(row.created_at),
        categories=tuple(c for c in (row.journey_id, row.touchpoint) if c),
        custom_args={k: v for k, v in (("postsale_message_id", row.id), ("journey", row.journey_id),
                                       ("step", row.step_id), ("category", row.category)) if v})


def deliver(ctx: Context, transport: Transport, *, batch_size: int = 200, max_batches: int | None = None,
            reconcile_after: timedelta | float | None = None,
            give_up_after: timedelta | float | None = None) -> DeliveryReport:
    """Settle stale ``sending`` rows, then hand every due queued message to the transport."""
    window = _delta(reconcile_after, RECONCILE_AFTER)
    limit = _delta(give_up_after, GIVE_UP_AFTER)
    report = DeliveryReport()
    sweep_stale(ctx, ctx.clock.now(), window, report)
    batches = 0
    while max_batches is None or batches < max_batches:
        now = ctx.clock.now()
        found, claimed = _claim(ctx, now, batch_size, report)
        if not found:
            break
        batches += 1
        if not claimed:
            continue
        try:
            sent = transport.send([outgoing(m) for m in claimed])
        except Exception as exc:  # a transport bug: nobody knows what went out
            log.exception("transport %s raised", getattr(transport, "name", "?"))
            from postsale.delivery.outcomes import uncertain
            sent = [uncertain(m.id, f"transport raised {type(exc).__name__}: {exc}") for m in claimed]
        results = {r.message_id: r for r in sent}
        _record(ctx, claimed, results, ctx.clock.now(), report, window=window, give_up_after=limit)
    return report


def _delta(value: timedelta | float | None, default: timedelta) -> timedelta:
    if value is None:
        return default
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


# ---------------------------------------------------------------- evidence

def evidence(session: Session, message_ids: list[str]) -> dict[str, str | None]:
    """Message ids with at least one provider event stored → the provider's message id, if known."""
    found: dict[str, str | None] = {}
    if not message_ids:
        return found
    for chunk in range(0, len(message_ids), 500):
        rows = session.execute(select(DeliveryEventRow.message_id, DeliveryEventRow.payload)
                               .where(DeliveryEventRow.message_id.in_(message_ids[chunk:chunk + 500])))
        for message_id, payload in rows:
            sg = str((payload or {}).get("sg_message_id") or "").split(".", 1)[0] or None
            if found.get(message_id) is None:
                found[message_id] = sg
    return found


def settle_values(row: Message, provider_id: str | None, now: datetime) -> dict:
    """The update that marks a row sent because the provider reported on it.

    A row already resent keeps its ``resent`` flag and note: an earlier copy may have gone out.
    """
    if row.reconcile == "resent":
        return {"status": "sent", "provider_id": row.provider_id or provider_id, "sent_at": row.sent_at or now,
                "next_attempt_at": None}
    return {"status": "sent", "provider_id": row.provider_id or provider_id, "sent_at": row.sent_at or now,
            "reconcile": "evidence", "next_attempt_at": None,
            "error": "settled from provider events after an attempt with an unknown outcome"}


def sweep_stale(ctx: Context, now: datetime, window: timedelta, report: DeliveryReport) -> None:
    """Rows left ``sending`` longer than ``window``: evidence → sent; none → resend once, flagged."""
    cutoff = now - window
    with Session(ctx.engine) as session:
        stale = list(session.scalars(select(Message).where(Message.status == "sending",
                                                           Message.sending_at <= cutoff)))
        if not stale:
            return
        seen = evidence(session, [m.id for m in stale])
        for row in stale:
            if row.id in seen:
                values = settle_values(row, seen[row.id], now)
                report.reconciled += 1
            elif row.reconcile == "resent":
                values = {"status": "failed", "error": (
                    f"fate unknown: the resend at {aware(row.sending_at).isoformat()} was interrupted too "
                    "and the provider reported nothing; not resent again (a late provider event marks it sent)")}
                report.failed += 1
                report.errors.append(f"{row.id}: {values['error']}")
                log.error("message %s: %s", row.id, values["error"])
            else:
                values = {"status": "queued", "next_attempt_at": now, "reconcile": "resent",
                          "error": _resent_note(row, window)}
                report.resent += 1
                log.warning("message %s was left 'sending' since %s with no provider event: resending once",
                            row.id, aware(row.sending_at).isoformat())
            session.execute(update(Message).where(Message.id == row.id, Message.status == "sending")
                            .values(**values))
        session.commit()


def _resent_note(row: Message, window: timedelta) -> str:
    return (f"resent without provider evidence: the attempt at {aware(row.sending_at).isoformat()} had an "
            f"unknown outcome and no provider event came within {int(window.total_seconds())}s "
            "(a duplicate is possible)")


# ---------------------------------------------------------------- claim and record

def _claim(ctx: Context, now: datetime, limit: int, report: DeliveryReport) -> tuple[int, list[Message]]:
    """Mark due rows ``sending`` (committed before any provider call); returns (found, to send).

    A due row whose last attempt was uncertain is first checked for provider evidence: with
    some it is settled as sent; without, it goes out again, flagged ``resent``.
    """
    with Session(ctx.engine, expire_on_commit=False) as session:
        query = (select(Message).where(Message.status == "queued",
                                       or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now))
                 .order_by(Message.created_at).limit(limit))
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(session.scalars(query))
        seen = evidence(session, [r.id for r in rows if r.attempts > 0])
        to_send = []
        for row in rows:
            if row.id in seen:
                for key, value in settle_values(row, seen[row.id], now).items():
                    setattr(row, key, value)
                report.reconciled += 1
                continue
            if row.reconcile == "uncertain":
                row.reconcile = "resent"
                report.resent += 1
            row.status, row.sending_at, row.attempts = "sending", now, row.attempts + 1
            to_send.append(row)
        session.commit()
        return len(rows), to_send


def _record(ctx: Context, claimed: list[Message], results: dict[str, SendResult], now: datetime,
            report: DeliveryReport, *, window: timedelta, give_up_after: timedelta) -> None:
    updates = []
    for row in claimed:
        result = results.get(row.id) or SendResult(row.id, False, error="no result from transport", transient=True)
        values: dict = {"provider_id": row.provider_id, "sent_at": row.sent_at, "reconcile": row.reconcile}
        if result.ok:
            values |= {"status": "sent", "provider_id": result.provider_id, "sent_at": now, "next_attempt_at": None,
                       "error": _resent_note(row, window) if row.reconcile == "resent" else None}
            report.sent += 1
        elif result.transient and _may_retry(row, now, give_up_after):
            if is_uncertain(result):          # wait for the provider's word before any resend
                delay = window.total_seconds()
                # A resend that is uncertain again keeps its flag: one copy may be out already.
                values["reconcile"] = "resent" if row.reconcile == "resent" else "uncertain"
            else:
                delay = _backoff(row.attempts, result.retry_after)
            values |= {"status": "queued", "next_attempt_at": now + timedelta(seconds=delay), "error": result.error}
            report.retried += 1
        else:
            values |= _failed(row, result.error, report)
        updates.append({"_id": row.id, **{f"_{k}": v for k, v in values.items()}})
    if not updates:
        return
    table = Message.__table__
    # One executemany; guarded: a provider event may already have settled a row while we waited.
    stmt = (table.update().where(table.c.id == bindparam("_id"), table.c.status == "sending")
            .values(**{k: bindparam(f"_{k}") for k in ("status", "provider_id", "sent_at", "next_attempt_at",
                                                        "error", "reconcile")}))
    with ctx.engine.begin() as conn:
        conn.execute(stmt, updates)


def _failed(row: Message, error: str | None, report: DeliveryReport) -> dict:
    report.failed += 1
    report.errors.append(f"{row.id}: {error}")
    log.error("message %s of journey %s failed: %s", row.id, row.journey_id, error)
    return {"status": "failed", "error": error, "next_attempt_at": None}


def _may_retry(row: Message, now: datetime, give_up_after: timedelta) -> bool:
    created = aware(row.created_at)
    return row.attempts < MAX_ATTEMPTS and (created is None or now - created < give_up_after)


def _backoff(attempts: int, retry_after: float | None) -> float:
    """The provider's word when it gave one (never earlier), else exponential with jitter."""
    if retry_after is not None:
        return max(1.0, retry_after) * random.uniform(1.0, 1.1)
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)

"""`forget`: erase a person's data, keeping only a hashed suppression (SPEC.md §6).

Everything that names or describes the person goes; what the engine needs to stay correct
stays, stripped to keys and counts:

| table | kept | erased |
| --- | --- | --- |
| customers | the id (the shop's key for every other row) | email, name, attributes, locale, zone |
| events | id (dedupe), type, times | the customer snapshot and all of ``data`` |
| runs | ids, step, status (unfinished ones end) | context: trigger data, waited events, text answers |
| messages | ids, template, status, times (caps and reports count them) | address, name, subject, bodies, headers; queued ones are cancelled |
| timeline | the decisions | subjects, alert texts, the address wherever a reason quotes it |
| survey_responses | numeric scores (report averages) | text answers |
| delivery_events | type, time | the provider payload |
| purchases | — | every row (incident fan-out must not reach this person) |
| suppressions | one row: sha256 of the address, scope ``all``, reason ``forgotten`` | — |

The dispatcher already ends the runs of a customer whose row has no email, so nothing can be
sent to a forgotten person even by a run that slipped past this transaction. An event that
arrives later for the same customer id brings new data in (it is new processing); the
suppression, scope ``all``, is what must then keep the address from being mailed again.
``store.dispatch`` ends every run of an address suppressed with scope ``all``, transactional
mail included.

On PostgreSQL the customers' rows are locked first (key order, like ingest and dispatch), so
a dispatcher halfway through a batch for this person commits before the erasure reads
anything, and a later one skips them until it is done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlmodel import Session

from models import Customer as CustomerRow
from models import DeliveryEvent, Message, Purchase, Run, Suppression, SurveyResponse, Timeline
from models import Event as EventRow
from postsale.store.context import Context
from postsale.store.ingest import UNFINISHED, end_run
from postsale.store.sql import email_hash

FORGOTTEN = "customer forgotten"
ERASED = "[erased]"


@dataclass
class ForgetReport:
    email_hash: str
    customers: int = 0
    events: int = 0
    runs: int = 0
    runs_ended: int = 0
    messages: int = 0
    messages_cancelled: int = 0
    timeline: int = 0
    survey_responses: int = 0
    delivery_events: int = 0
    purchases: int = 0
    suppression: str = "added"              # added | updated
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"email_hash": self.email_hash, "customers": self.customers, "events": self.events,
                "runs": self.runs, "runs_ended": self.runs_ended, "messages": self.messages,
                "messages_cancelled": self.messages_cancelled, "timeline": self.timeline,
                "survey_responses": self.survey_responses, "delivery_events": self.delivery_events,
                "purchases": self.purchases, "suppression": self.suppression, "dry_run": self.dry_run,
                "warnings": self.warnings}


def forget(ctx: Context, email: str, *, now: datetime | None = None, dry_run: bool = False) -> ForgetReport:
    """Erase every customer with this address (case-insensitive), in one transaction."""
    now = now or ctx.clock.now()
    address = email.strip().lower()
    report = ForgetReport(email_hash=email_hash(address), dry_run=dry_run)
    with Session(ctx.engine) as session:
        ids = _customer_ids(session, address)
        if ids:
            _customers(session, ids, now, report)
            _events(session, ids, report)
            _runs(session, ids, now, report)
            message_ids = _messages(session, ids, report)
            _timeline(session, ids, address, report)
            _surveys(session, ids, report)
            _delivery_events(session, message_ids, report)
            report.purchases = session.execute(delete(Purchase).where(Purchase.customer_id.in_(ids))).rowcount or 0
        else:
            _delivery_events(session, [], report)
        _suppress(session, report.email_hash, now, report)
        if dry_run:
            session.rollback()
        else:
            session.commit()
    return report


def _customer_ids(session: Session, address: str) -> list[str]:
    """Customers with this address now, or mailed at it before (an address changed since)."""
    ids = set(session.scalars(select(CustomerRow.id).where(func.lower(CustomerRow.email) == address)))
    ids |= set(session.scalars(select(Message.customer_id).where(func.lower(Message.to_email) == address,
                                                                 Message.category != "ops").distinct()))
    return sorted(ids)


def _customers(session: Session, ids: list[str], now: datetime, report: ForgetReport) -> None:
    rows = session.scalars(select(CustomerRow).where(CustomerRow.id.in_(ids)).order_by(CustomerRow.id)
                           .with_for_update())
    for row in rows:
        if "@" in row.id:
            report.warnings.append("a customer id is itself an address; ids are kept as the key of every "
                                   "row, so ask the shop to use opaque customer ids")
        row.email, row.name, row.attributes, row.locale, row.timezone = None, None, {}, None, "UTC"
        row.updated_at = now
        report.customers += 1


def _events(session: Session, ids: list[str], report: ForgetReport) -> None:
    for row in session.scalars(select(EventRow).where(EventRow.customer_id.in_(ids))):
        row.customer_snapshot, row.data = None, {}
        report.events += 1


def _runs(session: Session, ids: list[str], now: datetime, report: ForgetReport) -> None:
    for run in session.scalars(select(Run).where(Run.customer_id.in_(ids))):
        if run.status in UNFINISHED:
            end_run(session, run, now, FORGOTTEN)
            report.runs_ended += 1
        context = run.context or {}
        trigger = context.get("trigger") or {}
        answers = {survey: _numeric(given) for survey, given in (context.get("answers") or {}).items()
                   if isinstance(given, dict)}
        run.context = {"trigger": {k: trigger.get(k) for k in ("id", "type", "occurred_at")},
                       "answers": answers, "waited": None, "wake_event": None}
        report.runs += 1


def _messages(session: Session, ids: list[str], report: ForgetReport) -> list[str]:
    message_ids = []
    for row in session.scalars(select(Message).where(Message.customer_id.in_(ids))):
        if row.status == "queued":
            row.status, row.next_attempt_at = "failed", None
            report.messages_cancelled += 1
        row.to_email, row.to_name, row.subject, row.html, row.text_body = None, None, ERASED, None, None
        row.headers, row.error = {}, (FORGOTTEN if row.status == "failed" else None)
        message_ids.append(row.id)
        report.messages += 1
    return message_ids


def _timeline(session: Session, ids: list[str], address: str, report: ForgetReport) -> None:
    quoted = re.compile(re.escape(address), re.IGNORECASE)
    for row in session.scalars(select(Timeline).where(Timeline.customer_id.in_(ids))):
        before = (row.subject, row.reason)
        row.subject = ERASED if row.subject else None
        if row.action == "alert":       # free text written by a journey author: may say anything
            row.reason = f"alert {ERASED}"
        elif row.reason:
            row.reason = quoted.sub(ERASED, row.reason)
        report.timeline += (row.subject, row.reason) != before


def _surveys(session: Session, ids: list[str], report: ForgetReport) -> None:
    for row in session.scalars(select(SurveyResponse).where(SurveyResponse.customer_id.in_(ids))):
        row.answers = _numeric(row.answers or {})
        report.survey_responses += 1


def _delivery_events(session: Session, message_ids: list[str], report: ForgetReport) -> None:
    clauses = [DeliveryEvent.email_hash == report.email_hash]
    if message_ids:
        clauses.append(DeliveryEvent.message_id.in_(message_ids))
    for row in session.scalars(select(DeliveryEvent).where(or_(*clauses))):
        row.payload, row.email_hash = {}, None
        report.delivery_events += 1


def _suppress(session: Session, hashed: str, now: datetime, report: ForgetReport) -> None:
    row = session.scalars(select(Suppression).where(Suppression.email_hash == hashed)).first()
    if row is None:
        session.add(Suppression(email_hash=hashed, reason="forgotten", scope="all", source="forget",
                                created_at=now))
        report.suppression = "added"
    else:   # an earlier unsubscribe or bounce widens to "never mail again"
        row.reason, row.scope, row.source = "forgotten", "all", "forget"
        report.suppression = "updated"


def _numeric(answers: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answers.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


__all__ = ["ForgetReport", "forget", "FORGOTTEN"]

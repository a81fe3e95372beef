"""Every table postsale persists. Data only: no behaviour lives here.

Uniqueness is enforced by constraints, so that a duplicate is impossible rather than checked
for: an event id once (guarantee 1), one message per run × step (guarantee 2), one
suppression per hashed address, one journey version per content hash.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class Customer(SQLModel, table=True):
    __tablename__ = "customers"
    id: str = Field(primary_key=True, max_length=200)
    email: Optional[str] = Field(default=None, max_length=254, index=True)   # None once forgotten
    name: Optional[str] = Field(default=None, max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    locale: Optional[str] = Field(default=None, max_length=35)
    attributes: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    open_tickets: int = Field(default=0)
    created_at: Optional[datetime] = _ts()
    updated_at: Optional[datetime] = _ts()


class Event(SQLModel, table=True):
    """Every event taken, keyed by its id: a duplicate insert is the dedupe."""
    __tablename__ = "events"
    id: str = Field(primary_key=True, max_length=200)
    # no index of its own: every query of events names the customer (ix_events_customer_type_time);
    # one on type alone tempted PostgreSQL, without statistics, into reading every order.placed
    type: str = Field(max_length=100)
    occurred_at: Optional[datetime] = _ts(nullable=False)
    received_at: Optional[datetime] = _ts(nullable=False)
    customer_id: Optional[str] = Field(default=None, max_length=200)
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    customer_snapshot: Optional[dict] = Field(default=None, sa_column=Column(JSON, nullable=True))

    __table_args__ = (Index("ix_events_customer_type_time", "customer_id", "type", "occurred_at"),)


class Purchase(SQLModel, table=True):
    """One line per SKU bought: what incident fan-out selects on."""
    __tablename__ = "purchases"
    id: Optional[int] = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=200)
    customer_id: str = Field(max_length=200)
    sku: str = Field(max_length=200)
    purchased_at: Optional[datetime] = _ts(nullable=False)

    __table_args__ = (
        UniqueConstraint("event_id", "sku", name="uq_purchases_event_sku"),
        Index("ix_purchases_sku_time", "sku", "purchased_at"),
    )


class JourneyVersion(SQLModel, table=True):
    """The YAML a run entered with: editing a journey affects new entries only."""
    __tablename__ = "journey_versions"
    id: Optional[int] = Field(default=None, primary_key=True)
    journey_id: str = Field(max_length=100, index=True)
    content_hash: str = Field(max_length=64)
    source: str = Field(sa_column=Column(Text, nullable=False))
    file: str = Field(default="", max_length=500)
    created_at: Optional[datetime] = _ts()

    __table_args__ = (UniqueConstraint("journey_id", "content_hash", name="uq_journey_versions_hash"),)


class Run(SQLModel, table=True):
    """One customer's progress through one journey version."""
    __tablename__ = "runs"
    id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(max_length=200)   # ix_runs_customer_journey starts with it
    journey_id: str = Field(max_length=100)
    version_id: int = Field(foreign_key="journey_versions.id")
    touchpoint: str = Field(max_length=32)
    category: str = Field(max_length=16)
    status: str = Field(default="active", max_length=16)
    step_index: int = Field(default=0)
    step_id: Optional[str] = Field(default=None, max_length=100)
    next_run_at: Optional[datetime] = _ts()
    entered_at: Optional[datetime] = _ts(nullable=False)
    ended_at: Optional[datetime] = _ts()
    exit_reason: Optional[str] = Field(default=None, max_length=500)
    waiting_for: Optional[str] = Field(default=None, max_length=100)
    trigger_event_id: Optional[str] = Field(default=None, max_length=200)
    # trigger, answers, waited, wake_event, wait_until, due_since, last_event_at
    context: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: Optional[datetime] = _ts()

    __table_args__ = (
        # "runs due now, earliest first, whose customers?": the dispatcher's claim reads the index
        # in its order and stops at the batch's last customer (``dispatch.claim``)
        # (status stays out: an IN on a later column would cost PostgreSQL < 17 the index order)
        Index("ix_runs_due", "next_run_at", "customer_id",
              postgresql_where=text("next_run_at IS NOT NULL"), sqlite_where=text("next_run_at IS NOT NULL")),
        Index("ix_runs_customer_journey", "customer_id", "journey_id", "status"),
    )


class Message(SQLModel, table=True):
    """The outbox and the send log in one: written in the transaction that decides the send."""
    __tablename__ = "messages"
    id: str = Field(primary_key=True, max_length=64)         # deterministic from (run, step)
    run_id: str = Field(max_length=64)
    step_id: str = Field(max_length=100)
    customer_id: str = Field(max_length=200)
    journey_id: str = Field(max_length=100)
    touchpoint: str = Field(max_length=32)
    category: str = Field(max_length=16)
    is_survey: bool = Field(default=False)
    survey_id: Optional[str] = Field(default=None, max_length=100)
    template: str = Field(max_length=200)
    to_email: Optional[str] = Field(default=None, max_length=254)
    to_name: Optional[str] = Field(default=None, max_length=200)
    from_email: str = Field(default="", max_length=300)
    reply_to: Optional[str] = Field(default=None, max_length=300)
    subject: str = Field(default="", max_length=500)
    html: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    text_body: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    headers: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="queued", max_length=16)     # queued | sending | sent | failed
    provider_id: Optional[str] = Field(default=None, max_length=200)
    error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = Field(default=0)
    created_at: Optional[datetime] = _ts(nullable=False)     # decision time: what caps count
    sending_at: Optional[datetime] = _ts()
    sent_at: Optional[datetime] = _ts()
    next_attempt_at: Optional[datetime] = _ts()
    delivery_state: Optional[str] = Field(default=None, max_length=32)   # delivered, opened, bounced...
    # crash/timeout reconciliation (postsale.store.delivery): uncertain | resent | evidence
    reconcile: Optional[str] = Field(default=None, max_length=16)

    __table_args__ = (
        UniqueConstraint("run_id", "step_id", name="uq_messages_run_step"),
        # "messages sent to this customer since T": what caps and min_gap read
        Index("ix_messages_customer_time", "customer_id", "created_at"),
        Index("ix_messages_status", "status", "next_attempt_at"),
    )


class Suppression(SQLModel, table=True):
    """Addresses that get no marketing (or, after `forget`, nothing at all)."""
    __tablename__ = "suppressions"
    id: Optional[int] = Field(default=None, primary_key=True)
    email_hash: str = Field(max_length=64, unique=True)
    reason: str = Field(max_length=32)          # unsubscribed | bounced | complained | forgotten
    scope: str = Field(default="marketing", max_length=16)   # marketing | all
    source: Optional[str] = Field(default=None, max_length=200)
    created_at: Optional[datetime] = _ts()


class SurveyResponse(SQLModel, table=True):
    __tablename__ = "survey_responses"
    id: Optional[int] = Field(default=None, primary_key=True)
    message_id: Optional[str] = Field(default=None, max_length=64)
    run_id: Optional[str] = Field(default=None, max_length=64)
    customer_id: str = Field(max_length=200, index=True)
    journey_id: Optional[str] = Field(default=None, max_length=100)
    survey: str = Field(max_length=100)
    answers: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="final", max_length=16)   # provisional | final | void
    event_id: Optional[str] = Field(default=None, max_length=200)
    created_at: Optional[datetime] = _ts()
    updated_at: Optional[datetime] = _ts()

    __table_args__ = (UniqueConstraint("customer_id", "survey", "message_id", name="uq_survey_response"),)


class DeliveryEvent(SQLModel, table=True):
    __tablename__ = "delivery_events"
    id: Optional[int] = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200, unique=True)     # sg_event_id, or a hash of the payload
    message_id: Optional[str] = Field(default=None, max_length=64, index=True)
    event_type: str = Field(max_length=32)
    email_hash: Optional[str] = Field(default=None, max_length=64)
    occurred_at: Optional[datetime] = _ts()
    received_at: Optional[datetime] = _ts()
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Timeline(SQLModel, table=True):
    """Every decision, in order: what `report`, `simulate` and the Prefect logs read."""
    __tablename__ = "timeline"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: Optional[datetime] = _ts(nullable=False, index=True)
    customer_id: Optional[str] = Field(default=None, max_length=200, index=True)
    journey_id: Optional[str] = Field(default=None, max_length=100)
    run_id: Optional[str] = Field(default=None, max_length=64)
    step_id: Optional[str] = Field(default=None, max_length=100)
    action: str = Field(max_length=16)   # entered sent held skipped suppressed exited alert
    template: Optional[str] = Field(default=None, max_length=200)
    subject: Optional[str] = Field(default=None, max_length=500)
    reason: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))

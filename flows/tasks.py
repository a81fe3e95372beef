"""The small typed tasks the flows wire together: each one calls the engine once.

A task handles a batch (hundreds of customers or events), never one customer. Retries are
declared only where a retry can help: a database that was briefly unreachable or locked
(``OperationalError``) and a provider that failed transiently. A rejected event, a broken
template or a bad expression is not retried: the engine already records it with its reason.
Every engine call here is one transaction or idempotent (event ids, outbox rows keyed by
run × step), so a retried task never applies anything twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from models import Run, Timeline
from postsale.delivery.base import Transport
from postsale.errors import TransientDeliveryError
from postsale.store.context import Context
from postsale.store.delivery import DeliveryReport, deliver
from postsale.store.dispatch import DispatchReport, dispatch
from postsale.store.ingest import IngestResult, ingest_items
from postsale.store.report import JourneyReport, build_report
from postsale.store.runs import aware

RETRYABLE = (OperationalError, TransientDeliveryError)


def is_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry only what a retry can fix: a lost or locked database, a provider hiccup."""
    try:
        state.result()
    except RETRYABLE:
        return True
    except Exception:
        return False
    return False


_retrying: dict[str, Any] = dict(retries=3, retry_delay_seconds=[2, 10, 30], retry_jitter_factor=0.2,
                                 retry_condition_fn=is_transient, cache_policy=NO_CACHE)


def _count(key: str, noun: str):
    """A task run name from the length of one parameter: ``ingest 500 events``."""
    def name(parameters: dict[str, Any]) -> str:
        return noun.format(len(parameters.get(key) or ()))
    return name


@task(name="ingest-batch", task_run_name=_count("items", "ingest {} events"), **_retrying)
def ingest_batch(ctx: Context, items: list[Any]) -> IngestResult:
    """Validate, store and apply one batch of events in one transaction."""
    return ingest_items(ctx, items)


@task(name="dispatch-batch", task_run_name="dispatch batch {number}", **_retrying)
def dispatch_batch(ctx: Context, number: int) -> DispatchReport:
    """Claim and advance one batch of due customers (ctx.batch_size) in one transaction."""
    return dispatch(ctx, max_batches=1)


@task(name="dispatch-customers", task_run_name=_count("customer_ids", "dispatch {} customers"), **_retrying)
def dispatch_customers(ctx: Context, customer_ids: list[str]) -> DispatchReport:
    """Advance the due runs of these customers only."""
    return dispatch(ctx, customer_ids=customer_ids)


@task(name="deliver", task_run_name="deliver", **_retrying)
def deliver_outbox(ctx: Context, transport: Transport) -> DeliveryReport:
    """Hand every due queued outbox message to the transport."""
    from postsale.settings import load_settings
    return deliver(ctx, transport, reconcile_after=load_settings().delivery_reconcile_after)


@task(name="broadcast-audience", task_run_name="broadcast-audience", **_retrying)
def broadcast_audience(ctx: Context, event_id: str) -> list[str]:
    """Customers with unfinished runs that this (incident) event started."""
    from postsale.store.ingest import UNFINISHED
    with Session(ctx.engine) as session:
        return sorted(set(session.scalars(select(Run.customer_id).where(
            Run.trigger_event_id == event_id, Run.status.in_(UNFINISHED)))))


@task(name="journey-report", task_run_name="journey-report", **_retrying)
def journey_report(ctx: Context, since: datetime) -> list[JourneyReport]:
    """Per journey since a moment: entered, sent, held, skipped by reason, exited, scores."""
    return build_report(ctx.engine, since=since)


@task(name="alerts-since", task_run_name="alerts-since", **_retrying)
def alerts_since(ctx: Context, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The alert rows of the timeline in the period, oldest first."""
    with Session(ctx.engine) as session:
        rows = session.scalars(select(Timeline).where(Timeline.action == "alert", Timeline.at >= since,
                                                      Timeline.at <= until).order_by(Timeline.at, Timeline.id))
        return [{"at": aware(row.at), "journey": row.journey_id, "customer": row.customer_id,
                 "step": row.step_id, "message": row.reason or ""} for row in rows]


@task(name="failed-by-journey", task_run_name="failed-by-journey", **_retrying)
def failed_by_journey(ctx: Context, delivery: DeliveryReport) -> dict[str, int]:
    """Which journeys the messages that failed for good in this delivery belong to."""
    from models import Message
    ids = [error.split(":", 1)[0].strip() for error in delivery.errors]
    counts: dict[str, int] = {}
    if ids:
        with Session(ctx.engine) as session:
            for journey_id in session.scalars(select(Message.journey_id).where(Message.id.in_(ids))):
                counts[journey_id] = counts.get(journey_id, 0) + 1
    unknown = delivery.failed - sum(counts.values())
    if unknown > 0:
        counts["-"] = unknown
    return counts

"""Run rows ⇄ the engine's RunState, and the timeline every decision is written to."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from models import Run, Timeline
from postsale.engine.types import (Alerted, Exited, Held, Outcome, RunState, RunStatus, Sent, Skipped,
                                   StartJourney, Suppressed)

_CONTEXT_TIMES = ("wait_until", "due_since", "last_event_at")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: everything we store is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def to_state(row: Run) -> RunState:
    ctx = row.context or {}
    return RunState(
        run_id=row.id, journey_id=row.journey_id, customer_id=row.customer_id,
        entered_at=aware(row.entered_at), step_index=row.step_index, status=RunStatus(row.status),
        next_run_at=aware(row.next_run_at), trigger=ctx.get("trigger") or {},
        answers=ctx.get("answers") or {}, waited=ctx.get("waited"), wake_event=ctx.get("wake_event"),
        **{name: _parse(ctx.get(name)) for name in _CONTEXT_TIMES})


def context_of(state: RunState) -> dict[str, Any]:
    ctx: dict[str, Any] = {"trigger": state.trigger, "answers": state.answers, "waited": state.waited,
                           "wake_event": state.wake_event}
    ctx.update({name: _iso(getattr(state, name)) for name in _CONTEXT_TIMES})
    return ctx


def apply_state(row: Run, state: RunState, *, step_id: str | None, now: datetime,
                exit_reason: str | None = None) -> None:
    row.step_index = state.step_index
    row.step_id = step_id
    row.status = state.status.value
    row.next_run_at = state.next_run_at if not state.status.finished else None
    row.waiting_for = row.waiting_for if state.status is RunStatus.waiting else None
    row.context = context_of(state)
    row.updated_at = now
    if state.status.finished:
        row.ended_at = now
        row.exit_reason = exit_reason


def timeline_row(outcome: Outcome, *, at: datetime, run: Run) -> Timeline:
    """The decision as the timeline, report and simulate show it."""
    row = Timeline(at=at, customer_id=run.customer_id, journey_id=run.journey_id, run_id=run.id,
                   action=outcome.action)
    if isinstance(outcome, Sent):
        row.step_id, row.template, row.subject = outcome.step_id, outcome.template, outcome.email.subject
    elif isinstance(outcome, Held):
        until = f" until {outcome.until.astimezone(timezone.utc).isoformat().replace('+00:00', 'Z')}" if outcome.until else ""
        row.step_id, row.reason = outcome.step_id, f"{outcome.reason}{until}"
    elif isinstance(outcome, (Skipped, Suppressed)):
        row.step_id, row.reason = outcome.step_id, outcome.reason
    elif isinstance(outcome, Alerted):
        row.step_id, row.reason = outcome.step_id, outcome.message
    elif isinstance(outcome, StartJourney):
        row.step_id, row.reason = outcome.step_id, f"start {outcome.journey_id}"
    elif isinstance(outcome, Exited):
        row.step_id, row.reason = outcome.step_id or None, outcome.reason
    return row


def with_wake(state: RunState, event_scope: dict[str, Any], now: datetime) -> RunState:
    return replace(state, wake_event=event_scope, status=RunStatus.active, next_run_at=now)

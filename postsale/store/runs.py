"""Run rows ⇄ the engine's RunState, and the timeline every decision is written to.

The writers here return plain column dicts, not ORM objects: dispatch sends a batch's run
updates and timeline rows as one ``executemany`` each (``postsale.store.dispatch``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from postsale.engine.types import (Alerted, Exited, Held, Outcome, RunState, RunStatus, Sent, Skipped,
                                   StartJourney, Suppressed, make)

_CONTEXT_TIMES = ("wait_until", "due_since", "last_event_at")
_UTC = timezone.utc


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(_UTC).isoformat() if value else None


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: everything we store is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=_UTC)


_STATUSES = {status.value: status for status in RunStatus}


def to_state(row: Any) -> RunState:
    """The engine's view of a run: ``row`` is a ``Run`` or a Core row with the same columns.

    Dispatch calls this for every due run: the status is looked up, not constructed, and the
    ``RunState`` is made with every field given, without its frozen ``__init__`` (``make``).
    """
    ctx = row.context or {}
    get = ctx.get
    status = row.status
    return make(
        RunState, run_id=row.id, journey_id=row.journey_id, customer_id=row.customer_id,
        entered_at=aware(row.entered_at), step_index=row.step_index,
        status=_STATUSES[status] if status in _STATUSES else RunStatus(status),
        next_run_at=aware(row.next_run_at), trigger=get("trigger") or {},
        answers=get("answers") or {}, waited=get("waited"), wake_event=get("wake_event"),
        wait_until=_parse(get("wait_until")), due_since=_parse(get("due_since")),
        last_event_at=_parse(get("last_event_at")))


def context_of(state: RunState) -> dict[str, Any]:
    ctx: dict[str, Any] = {"trigger": state.trigger, "answers": state.answers, "waited": state.waited,
                           "wake_event": state.wake_event}
    ctx.update({name: _iso(getattr(state, name)) for name in _CONTEXT_TIMES})
    return ctx


def state_values(state: RunState, stored: Any, *, step_id: str | None, now: datetime,
                 waiting_for: str | None, exit_reason: str | None = None) -> dict[str, Any]:
    """The run columns ``state`` changes, keyed by column name (``updated_at`` always).

    ``stored`` is the run as read (a ``Run`` or a Core row); ``waiting_for`` is what the run
    waits for if it is waiting (cleared otherwise). Like the ORM's dirty tracking, a column that
    keeps its value is left out: SQLite then leaves the indexes on it alone, and an unchanged
    context (the largest thing a run update carries) is not encoded again.
    """
    finished = state.status.finished
    values: dict[str, Any] = {}
    if state.step_index != stored.step_index:
        values["step_index"] = state.step_index
    if step_id != stored.step_id:
        values["step_id"] = step_id
    if state.status.value != stored.status:
        values["status"] = state.status.value
    next_run_at = None if finished else state.next_run_at
    if next_run_at != aware(stored.next_run_at):
        values["next_run_at"] = next_run_at
    waiting_for = waiting_for if state.status is RunStatus.waiting else None
    if waiting_for != stored.waiting_for:
        values["waiting_for"] = waiting_for
    context = context_of(state)
    if context != stored.context:
        values["context"] = context
    values["updated_at"] = now
    if finished:
        values["ended_at"] = now
        values["exit_reason"] = exit_reason
    return values


def ended_values(now: datetime, reason: str, *, status: str = "exited") -> dict[str, Any]:
    """The run columns of a run the edge ends (``postsale.store.ingest.end_run`` sets the same)."""
    return {"status": status, "next_run_at": None, "ended_at": now, "exit_reason": reason,
            "waiting_for": None, "updated_at": now}


def timeline_values(*, at: datetime, customer_id: str | None, journey_id: str | None, run_id: str | None,
                    action: str, step_id: str | None = None, template: str | None = None,
                    subject: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """One timeline row, every column given (an ``executemany`` needs the same keys in each)."""
    return {"at": at, "customer_id": customer_id, "journey_id": journey_id, "run_id": run_id,
            "step_id": step_id, "action": action, "template": template, "subject": subject,
            "reason": reason}


def outcome_values(outcome: Outcome, *, at: datetime, customer_id: str, journey_id: str,
                   run_id: str) -> dict[str, Any]:
    """The decision as the timeline, report and simulate show it."""
    row = timeline_values(at=at, customer_id=customer_id, journey_id=journey_id, run_id=run_id,
                          action=outcome.action)
    if isinstance(outcome, Sent):
        row["step_id"], row["template"], row["subject"] = outcome.step_id, outcome.template, outcome.email.subject
    elif isinstance(outcome, Held):
        until = f" until {outcome.until.astimezone(_UTC).isoformat().replace('+00:00', 'Z')}" if outcome.until else ""
        row["step_id"], row["reason"] = outcome.step_id, f"{outcome.reason}{until}"
    elif isinstance(outcome, (Skipped, Suppressed)):
        row["step_id"], row["reason"] = outcome.step_id, outcome.reason
    elif isinstance(outcome, Alerted):
        row["step_id"], row["reason"] = outcome.step_id, outcome.message
    elif isinstance(outcome, StartJourney):
        row["step_id"], row["reason"] = outcome.step_id, f"start {outcome.journey_id}"
    elif isinstance(outcome, Exited):
        row["step_id"], row["reason"] = outcome.step_id or None, outcome.reason
    return row


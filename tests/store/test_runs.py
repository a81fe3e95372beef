"""Run rows to the engine's RunState and back (``postsale.store.runs``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from postsale.engine.types import RunState, RunStatus
from postsale.store.runs import context_of, to_state

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def row(status: str = "waiting", **context) -> SimpleNamespace:
    return SimpleNamespace(id="r-1", journey_id="j", customer_id="c-1", entered_at=T0.replace(tzinfo=None),
                           step_index=3, status=status, next_run_at=T0 + timedelta(days=2), context=context)


def test_a_row_reads_as_the_state_the_constructor_builds():
    state = to_state(row(trigger={"id": "e-1", "data": {"total": 5}}, answers={"csat": {"score": 4}},
                         waited=None, wake_event={"type": "x"}, wait_until="2026-11-05T09:00:00+00:00",
                         due_since="2026-11-03T09:00:00", last_event_at=None))
    assert state == RunState(run_id="r-1", journey_id="j", customer_id="c-1", entered_at=T0, step_index=3,
                             status=RunStatus.waiting, next_run_at=T0 + timedelta(days=2),
                             trigger={"id": "e-1", "data": {"total": 5}}, answers={"csat": {"score": 4}},
                             waited=None, wake_event={"type": "x"}, wait_until=T0 + timedelta(days=3),
                             due_since=T0 + timedelta(days=1), last_event_at=None)
    assert state.status is RunStatus.waiting and state.entered_at.tzinfo is timezone.utc


def test_an_empty_context_and_every_status():
    for status in RunStatus:
        state = to_state(row(status.value))
        assert state.status is status and state.trigger == {} and state.answers == {}
    with pytest.raises(ValueError):
        to_state(row("sleeping"))


def test_context_of_reads_back_as_the_same_state():
    state = to_state(row(trigger={"id": "e"}, wait_until="2026-11-05T09:00:00+00:00"))
    assert to_state(row(**context_of(state))) == state

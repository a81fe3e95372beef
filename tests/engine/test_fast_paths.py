"""The engine's shortcuts give what the library calls they stand for would give."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postsale.engine import message_id_for
from postsale.engine.caps import earliest_send
from postsale.engine.steps import _MESSAGE_NS, zone
from postsale.engine.types import RunState, RunStatus, evolve, make
from postsale.spec.model import Category
from tests.factories import T0, cap, make_customer_state, make_policy, make_run, sent_record


@given(st.text(), st.text())
def test_message_ids_are_the_uuid5_of_run_and_step(run_id, step_id):
    assert message_id_for(run_id, step_id) == uuid.uuid5(_MESSAGE_NS, f"{run_id}\x1f{step_id}").hex


def test_evolve_gives_what_replace_gives_and_leaves_the_original_alone():
    run = make_run(trigger={"data": {"order_id": "o-1"}})
    moved = evolve(run, step_index=3, status=RunStatus.waiting, next_run_at=None)
    assert moved == replace(run, step_index=3, status=RunStatus.waiting, next_run_at=None)
    assert type(moved) is type(run) and moved.trigger is run.trigger
    assert (run.step_index, run.status) == (0, RunStatus.active)
    state = make_customer_state(history=[sent_record(T0)])
    assert evolve(state, history=()) == replace(state, history=())
    with pytest.raises(AttributeError):        # still frozen
        moved.step_index = 4                    # type: ignore[misc]


def test_evolve_runs_post_init_where_a_dataclass_has_one():
    @dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self):
            if self.n < 0:
                raise ValueError("negative")

    assert evolve(Checked(1), n=2) == Checked(2)
    with pytest.raises(ValueError):
        evolve(Checked(1), n=-1)


def test_make_gives_what_the_constructor_gives():
    fields = dict(run_id="r", journey_id="j", customer_id="c", entered_at=T0, step_index=2,
                  status=RunStatus.waiting, next_run_at=T0 + timedelta(days=1), trigger={"id": "e"},
                  answers={}, waited=None, wake_event=None, wait_until=T0, due_since=None, last_event_at=None)
    made = make(RunState, **fields)
    assert made == RunState(**fields) and type(made) is RunState
    assert repr(made) == repr(RunState(**fields))
    with pytest.raises(AttributeError):        # still frozen
        made.step_index = 4                     # type: ignore[misc]
    # Fewer fields (defaults to fill) or a wrong one: the constructor decides, as always.
    assert make(RunState, run_id="r", journey_id="j", customer_id="c", entered_at=T0) == RunState("r", "j", "c", T0)
    with pytest.raises(TypeError):
        make(RunState, **{**fields, "step": 1})


def test_evolve_refuses_a_field_the_value_does_not_have():
    with pytest.raises(TypeError, match="step"):
        evolve(make_run(), step=2)


def test_zones_are_the_zoneinfo_zones_looked_up_once():
    assert zone("Asia/Tokyo") is zone("Asia/Tokyo")
    assert zone("Asia/Tokyo") == ZoneInfo("Asia/Tokyo")
    with pytest.raises(ZoneInfoNotFoundError):
        zone("Mars/Olympus_Mons")


def test_one_cap_used_by_two_rules_is_named_after_the_rule_that_holds():
    shared = cap(5, "7d", min_gap="1d12h")
    history = [sent_record(T0 - timedelta(hours=12), "other", is_survey=True)]
    free = T0 + timedelta(days=1)

    def hold(policy):
        return earliest_send(T0, history, journey_id="care", category=Category.marketing, is_survey=True,
                             policy=policy)

    assert hold(make_policy(marketing_cap=shared, journey_cap=None, survey_cap=None)) == (free, "min_gap 1d12h")
    assert hold(make_policy(marketing_cap=None, journey_cap=None, survey_cap=shared)) == (free, "survey min_gap 1d12h")
    assert hold(make_policy(marketing_cap=None, journey_cap=cap(1, "7d"), survey_cap=None)) == (T0, None)
    history.append(sent_record(T0 - timedelta(hours=1), "care"))
    assert hold(make_policy(marketing_cap=None, journey_cap=cap(1, "7d"), survey_cap=None)) == \
        (T0 + timedelta(days=7) - timedelta(hours=1), "journey cap 1 per 7d")

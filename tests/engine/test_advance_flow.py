"""wait, wait_for, if, alert, start, exit, exit_when and completion."""

from __future__ import annotations

import importlib
from dataclasses import replace
from datetime import timedelta

from postsale.engine import advance
from postsale.engine.types import Alerted, Exited, RunStatus, Sent, Skipped, StartJourney
from tests.factories import (T0, alert, at, exit_, if_, make_customer, make_customer_state, make_event,
                             make_journey, make_policy, make_run, no_limits_policy, send, start, survey, wait,
                             wait_for)
from tests.fakes import FakeRenderer

D, H = timedelta(days=1), timedelta(hours=1)


def go(journey, *, run=None, state=None, policy=None, now=T0):
    return advance(run or make_run(journey), journey, state or make_customer_state(),
                   policy or make_policy(), now, FakeRenderer())


def actions(result):
    return [(o.action, getattr(o, "step_id", "")) for o in result.outcomes]


# ---------------------------------------------------------------- wait

def test_wait_with_at_lands_on_the_customers_wall_clock_across_dst():
    journey = make_journey(send("a"), wait("2d", at="10:00", id="w"), send("b"))
    state = make_customer_state(make_customer(timezone="America/New_York"))
    friday = at(2026, 3, 6, 15)                     # 10:00 EST
    first = go(journey, run=make_run(journey, entered_at=friday), state=state, policy=no_limits_policy(),
               now=friday)
    assert actions(first) == [("sent", "a")]
    # +2d is Sunday 11:00 EDT (the clocks sprang forward): the next 10:00 is Monday 10:00 EDT.
    monday = at(2026, 3, 9, 14)
    assert (first.run.step_index, first.run.status, first.run.next_run_at) == (2, RunStatus.active, monday)
    second = go(journey, run=first.run, state=state, policy=no_limits_policy(), now=monday)
    assert actions(second) == [("sent", "b"), ("exited", "")]


def test_wait_without_at_is_plain_duration():
    journey = make_journey(wait("1d12h", id="w"), send("b"))
    result = go(journey)
    assert result.outcomes == () and result.run.next_run_at == T0 + 36 * H and result.run.step_index == 1


# ---------------------------------------------------------------- wait_for and if on answers

LOW = "answers.csat.score is defined and answers.csat.score <= 2"
HIGH = "answers.csat.score is defined and answers.csat.score >= 4"
SPEC_TAIL = make_journey(
    survey("csat"),
    wait_for("survey.answered", timeout="5d", id="answer"),
    if_(LOW, id="low", then=[
        send("sorry_we_will_fix"),
        alert("Unhappy customer {{ customer.email }} after order {{ data.order_id }}"),
        start("issue-resolution")],
        otherwise=[if_(HIGH, id="high", then=[send("review_invitation")])]))


def answered(score):
    return make_event("survey.answered", id=f"answer-{score}", occurred_at=T0 + D,
                      survey="csat", journey="post-purchase", answers={"score": score}).scope()


def waiting_run():
    result = go(SPEC_TAIL)
    assert actions(result) == [("sent", "csat")]
    run = result.run
    assert (run.status, run.step_index, run.wait_until, run.next_run_at) == (
        RunStatus.waiting, 1, T0 + 5 * D, T0 + 5 * D)
    return run


def woken(run, score):
    # What the edge does when the event arrives: store it, make the run due now.
    return replace(run, wake_event=answered(score), status=RunStatus.active, next_run_at=T0 + D)


def test_a_poor_answer_takes_the_then_branch():
    result = go(SPEC_TAIL, run=woken(waiting_run(), 1), now=T0 + D)
    assert actions(result) == [("sent", "sorry_we_will_fix"), ("alert", "alert"),
                               ("start", "start-issue-resolution"), ("exited", "")]
    assert result.outcomes[1] == Alerted("alert", "Unhappy customer c-42@example.com after order 1001")
    assert result.outcomes[2] == StartJourney("start-issue-resolution", "issue-resolution")
    run = result.run
    assert run.waited == answered(1) and run.answers == {"csat": {"score": 1}}
    assert (run.wake_event, run.wait_until, run.status) == (None, None, RunStatus.completed)


def test_a_good_answer_takes_the_nested_else_branch():
    result = go(SPEC_TAIL, run=woken(waiting_run(), 5), now=T0 + D)
    assert actions(result) == [("sent", "review_invitation"), ("exited", "")]


def test_answers_stored_by_the_edge_are_used_as_they_are():
    run = replace(woken(waiting_run(), 5), answers={"csat": {"score": 2}},
                  wake_event=make_event("survey.answered", survey="nps", answers={"score": 9}).scope())
    result = go(SPEC_TAIL, run=run, now=T0 + D)
    assert actions(result)[0] == ("sent", "sorry_we_will_fix")
    assert result.run.answers == {"csat": {"score": 2}}          # nps is not this journey's survey


def test_wait_for_times_out_with_waited_none():
    result = go(SPEC_TAIL, run=waiting_run(), now=T0 + 5 * D)
    assert actions(result) == [("exited", "")]                  # no answer: neither branch sends
    assert result.run.waited is None and result.run.wait_until is None


def test_an_early_wake_up_does_not_restart_the_timeout():
    run = waiting_run()
    for spurious in (run, replace(run, status=RunStatus.active, next_run_at=T0 + D)):
        result = go(SPEC_TAIL, run=spurious, now=T0 + D)
        assert result.outcomes == ()
        assert (result.run.status, result.run.wait_until, result.run.next_run_at) == (
            RunStatus.waiting, T0 + 5 * D, T0 + 5 * D)


def test_wait_for_without_timeout_waits_for_the_event_only():
    journey = make_journey(wait_for("order.delivered", id="delivered"), send("tips"))
    result = go(journey)
    assert (result.run.status, result.run.wait_until, result.run.next_run_at) == (RunStatus.waiting, None, None)
    assert go(journey, run=result.run, now=T0 + 30 * D).outcomes == ()
    event = make_event("order.delivered", occurred_at=T0 + 2 * D).scope()
    done = go(journey, run=replace(result.run, wake_event=event, status=RunStatus.active,
                                   next_run_at=T0 + 2 * D), now=T0 + 2 * D)
    assert actions(done) == [("sent", "tips"), ("exited", "")]
    assert done.run.waited["type"] == "order.delivered"


def test_a_failing_if_skips_the_whole_if_and_carries_on():
    journey = make_journey(if_("customer.attributes.tier.level > 1", then=[send("a")],
                               otherwise=[send("b")]), send("c"))
    result = go(journey)
    skipped = result.outcomes[0]
    assert isinstance(skipped, Skipped) and skipped.step_id == "if"
    assert "customer.attributes.tier.level" in skipped.reason
    assert actions(result)[1:] == [("sent", "c"), ("exited", "")]


# ---------------------------------------------------------------- alert, start, exit

def test_a_broken_alert_text_still_alerts_with_the_raw_text_and_the_error():
    result = go(make_journey(alert("Oops {{ customer.nope.x }}")))
    message = result.outcomes[0].message
    assert message.startswith("Oops {{ customer.nope.x }} (alert text failed:")


def test_alert_text_cannot_reach_python_internals():
    result = go(make_journey(alert("{{ customer.__class__.__mro__ }}")))
    assert "alert text failed" in result.outcomes[0].message


def test_start_asks_the_edge_to_enroll_and_carries_on():
    result = go(make_journey(start("issue-resolution"), send("a")))
    assert actions(result) == [("start", "start-issue-resolution"), ("sent", "a"), ("exited", "")]


def test_exit_step_ends_the_run_there():
    journey = make_journey(send("a"), exit_("goal reached"), send("b"))
    result = go(journey)
    assert result.outcomes[1:] == (Exited("goal reached", "exit"),)
    assert (result.run.status, result.run.next_run_at) == (RunStatus.exited, None)
    assert go(journey, run=result.run, now=T0 + D).outcomes == ()


def test_exit_when_is_checked_before_every_step():
    journey = make_journey(send("a"), wait("1d", id="w"), send("b"), exit_when=("order.refunded",))
    first = go(journey)
    assert actions(first) == [("sent", "a")]
    refunded = make_customer_state(exit_events=[("order.refunded", T0 + 2 * H)])
    result = go(journey, run=first.run, state=refunded, now=T0 + D)
    assert result.outcomes == (Exited("exit_when order.refunded", "b"),)
    assert (result.run.status, result.run.next_run_at) == (RunStatus.exited, None)


def test_exit_when_ends_a_sleeping_run_too():
    journey = make_journey(send("a"), wait("1d", id="w"), send("b"), exit_when=("order.refunded",))
    first = go(journey)
    refunded = make_customer_state(exit_events=[("order.refunded", T0 + 2 * H)])
    result = go(journey, run=first.run, state=refunded, now=T0 + 3 * H)
    assert result.outcomes == (Exited("exit_when order.refunded", "b"),)


def test_exit_when_ignores_events_before_entry_after_now_and_of_other_types():
    journey = make_journey(send("a"), exit_when=("order.refunded",))
    state = make_customer_state(exit_events=[("order.refunded", T0 - H), ("order.refunded", T0 + H),
                                             ("order.cancelled", T0)])
    assert actions(go(journey, state=state)) == [("sent", "a"), ("exited", "")]


def test_a_pointer_at_the_end_completes():
    journey = make_journey(send("a"))
    result = go(journey, run=make_run(journey, step_index=1))
    assert result.outcomes == (Exited("completed"),)
    assert (result.run.status, result.run.next_run_at) == (RunStatus.completed, None)


def test_a_journey_runs_end_to_end_in_one_advance_when_nothing_waits():
    journey = make_journey(send("a", condition="data.total > 0"),
                           if_("customer.attributes.vip", then=[send("vip")], otherwise=[send("regular")]))
    vip = make_customer_state(make_customer(vip=True))
    result = go(journey, state=vip, policy=no_limits_policy())
    assert [o.template for o in result.outcomes if isinstance(o, Sent)] == ["a", "vip"]


def test_the_instruction_guard_stops_and_resumes_at_the_next_tick(monkeypatch):
    # `postsale.engine.advance` the attribute is the function; the module is in sys.modules.
    engine_advance = importlib.import_module("postsale.engine.advance")
    monkeypatch.setattr(engine_advance, "MAX_INSTRUCTIONS", 2)
    journey = make_journey(send("a"), send("b"), send("c"))
    first = go(journey, policy=no_limits_policy())
    assert actions(first) == [("sent", "a"), ("sent", "b")]
    assert (first.run.step_index, first.run.next_run_at) == (2, T0)
    assert actions(go(journey, run=first.run, policy=no_limits_policy())) == [("sent", "c"), ("exited", "")]

"""Send and survey steps: rendering, holds (quiet hours, caps, open tickets), expiry, skips."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from postsale.engine import advance, message_id_for
from postsale.engine.types import (Exited, Held, RunStatus, Sent, Skipped, Suppressed)
from postsale.spec.model import Category, Survey, Touchpoint
from tests.factories import (T0, at, cap, make_customer, make_customer_state, make_journey, make_policy,
                             make_run, no_limits_policy, send, sent_record, survey)
from tests.fakes import FakeRenderer

D, H = timedelta(days=1), timedelta(hours=1)
ROME = make_customer(timezone="Europe/Rome", locale="it")


def go(journey, *, run=None, state=None, policy=None, now=T0, renderer=None):
    return advance(run or make_run(journey), journey, state or make_customer_state(),
                   policy or make_policy(), now, renderer or FakeRenderer())


def actions(result):
    return [(o.action, getattr(o, "step_id", "")) for o in result.outcomes]


# ---------------------------------------------------------------- sending

def test_a_send_renders_with_the_full_scope_and_the_run_completes():
    journey = make_journey(send("thank_you"))
    renderer = FakeRenderer()
    result = go(journey, state=make_customer_state(ROME), renderer=renderer)
    sent, done = result.outcomes
    assert isinstance(sent, Sent) and done == Exited("completed")
    assert (sent.step_id, sent.template, sent.category, sent.touchpoint) == (
        "thank_you", "thank_you", Category.marketing, Touchpoint.immediate_post_sale)
    assert sent.message_id == message_id_for("run-1", "thank_you")
    assert sent.email.subject == "thank_you subject" and not sent.is_survey
    request, = renderer.requests
    assert (request.customer_id, request.locale, request.survey) == ("c-42", "it", None)
    assert set(request.scope) == {"customer", "event", "data", "answers", "waited", "journey", "now"}
    assert request.scope["data"]["order_id"] == "1001"
    assert request.scope["event"]["type"] == "order.placed"
    assert request.scope["journey"] == {"id": "post-purchase", "name": "Post Purchase",
                                        "touchpoint": "immediate_post_sale", "category": "marketing"}
    assert request.scope["now"] == T0 and request.scope["customer"]["timezone"] == "Europe/Rome"
    assert (result.run.status, result.run.step_index, result.run.next_run_at) == (RunStatus.completed, 1, None)


def test_message_ids_are_deterministic_per_run_and_step():
    one = message_id_for("run-1", "tips")
    assert one == message_id_for("run-1", "tips") and len(one) == 32 and int(one, 16) >= 0
    assert one != message_id_for("run-1", "thank_you") != message_id_for("run-2", "tips")


def test_a_send_in_the_same_advance_obeys_min_gap():
    result = go(make_journey(send("a"), send("b")))
    assert actions(result) == [("sent", "a"), ("held", "b")]
    assert result.outcomes[1] == Held("b", T0 + 20 * H, "min_gap 20h")
    assert (result.run.step_index, result.run.next_run_at, result.run.due_since) == (1, T0 + 20 * H, T0)


def test_condition_false_and_failing_expressions_skip_with_a_reason():
    journey = make_journey(
        send("big", condition="data.total > 1000"),
        send("broken", condition="data.nope.deeper > 1"),
        send("kitchen", condition="'kitchen' in data['items'] | map(attribute='category') | list"))
    result = go(journey, policy=no_limits_policy())
    big, broken, kitchen, _ = result.outcomes
    assert big == Skipped("big", "condition false")
    assert isinstance(broken, Skipped) and "data.nope.deeper" in broken.reason and "failed" in broken.reason
    assert isinstance(kitchen, Sent)


def test_a_render_failure_skips_that_message_only():
    result = go(make_journey(send("a"), send("b")), policy=no_limits_policy(),
                renderer=FakeRenderer(fail={"a": "undefined name 'coupon'"}))
    assert result.outcomes[0] == Skipped("a", "render failed: undefined name 'coupon'")
    assert actions(result)[1:] == [("sent", "b"), ("exited", "")]


def test_transactional_mail_ignores_quiet_hours_caps_tickets_and_suppression():
    full = [sent_record(T0 - k * H, "x") for k in (1, 2, 3)]
    state = make_customer_state(ROME, history=full, ticket_open=True, suppressed="unsubscribed")
    night = at(2026, 11, 23, 22)     # 23:00 in Rome
    result = go(make_journey(send("receipt"), category=Category.transactional), state=state, now=night)
    assert actions(result) == [("sent", "receipt"), ("exited", "")]
    assert result.outcomes[0].category is Category.transactional


# ---------------------------------------------------------------- holds and expiry

def test_quiet_hours_hold_until_morning_in_the_customers_zone():
    journey = make_journey(send("tips"))
    night = at(2026, 11, 23, 21, 30)          # 22:30 CET
    state = make_customer_state(ROME)
    held = go(journey, state=state, now=night)
    morning = at(2026, 11, 24, 7)             # 08:00 CET
    assert held.outcomes == (Held("tips", morning, "quiet hours 21:00-08:00"),)
    assert (held.run.status, held.run.step_index, held.run.next_run_at, held.run.due_since) == (
        RunStatus.active, 0, morning, night)
    later = go(journey, run=held.run, state=state, now=morning)
    assert actions(later) == [("sent", "tips"), ("exited", "")]
    assert later.run.due_since is None


def test_due_since_is_kept_across_successive_holds():
    journey = make_journey(send("tips", expire_after="3d"))
    night = at(2026, 11, 23, 21, 30)
    first = go(journey, state=make_customer_state(ROME), now=night)
    # By morning an order confirmation went out: min_gap pushes the tip to 02:30 CET, then to 08:00.
    receipt = sent_record(at(2026, 11, 24, 6, 30), "orders", category=Category.transactional)
    morning = first.run.next_run_at
    second = go(journey, run=first.run, state=make_customer_state(ROME, history=[receipt]), now=morning)
    assert second.outcomes == (Held("tips", at(2026, 11, 25, 7), "min_gap 20h"),)
    assert second.run.due_since == night


def test_a_message_capped_past_its_expiry_is_skipped_at_once():
    history = [sent_record(T0 - 2 * D, "a"), sent_record(T0 - 3 * D, "b"), sent_record(T0 - 4 * D, "c")]
    journey = make_journey(send("tips", expire_after="2d"))
    result = go(journey, state=make_customer_state(history=history))
    assert result.outcomes[0] == Skipped("tips", "expired: held longer than 2d (marketing cap 3 per 7d)")
    assert result.run.status is RunStatus.completed


def test_a_held_message_that_comes_back_past_its_expiry_is_skipped():
    journey = make_journey(send("tips", expire_after="12h"))
    state = make_customer_state(history=[sent_record(T0 - 16 * H, "orders", category=Category.transactional)])
    held = go(journey, state=state)
    assert held.outcomes == (Held("tips", T0 + 4 * H, "min_gap 20h"),)
    # Meanwhile another journey sent something: the next free moment is past the 12h expiry.
    busier = replace(state, history=state.history + (sent_record(T0 + 3 * H, "care"),))
    back = go(journey, run=held.run, state=busier, now=T0 + 4 * H)
    assert back.outcomes[0] == Skipped("tips", "expired: held longer than 12h (min_gap 20h)")


def test_an_open_ticket_holds_marketing_until_the_edge_wakes_the_run():
    journey = make_journey(send("tips"), send("receipt", id="later"))
    open_ticket = make_customer_state(ticket_open=True)
    held = go(journey, state=open_ticket)
    assert held.outcomes == (Held("tips", None, "ticket open"),)
    assert (held.run.status, held.run.next_run_at, held.run.due_since, held.run.step_index) == (
        RunStatus.held, None, T0, 0)
    # ticket.resolved: the edge marks the run active and due now.
    woken = replace(held.run, status=RunStatus.active, next_run_at=T0 + 2 * D)
    sent = go(journey, run=woken, state=make_customer_state(), now=T0 + 2 * D)
    assert actions(sent)[0] == ("sent", "tips")


def test_a_ticket_hold_expires_at_expire_after():
    journey = make_journey(send("tips", expire_after="3d"))
    open_ticket = make_customer_state(ticket_open=True)
    held = go(journey, state=open_ticket)
    assert held.run.next_run_at == T0 + 3 * D
    still = go(journey, run=held.run, state=open_ticket, now=T0 + D)
    assert still.outcomes == (Held("tips", None, "ticket open"),) and still.run.due_since == T0
    expired = go(journey, run=held.run, state=open_ticket, now=T0 + 3 * D)
    assert expired.outcomes[0] == Skipped("tips", "expired: held longer than 3d (ticket open)")


def test_the_ticket_hold_can_be_turned_off():
    result = go(make_journey(send("tips")), state=make_customer_state(ticket_open=True),
                policy=make_policy(hold_marketing_while_ticket_open=False))
    assert actions(result)[0] == ("sent", "tips")


def test_a_zero_cap_skips_instead_of_holding_forever():
    result = go(make_journey(send("tips")), policy=no_limits_policy(marketing_cap=cap(0, "7d")))
    assert result.outcomes[0] == Skipped("tips", "marketing cap 0 per 7d")


# ---------------------------------------------------------------- surveys and suppression

def test_a_survey_renders_its_survey_template_as_marketing():
    journey = make_journey(survey("csat"), category=Category.transactional)
    renderer = FakeRenderer()
    sent = go(journey, renderer=renderer).outcomes[0]
    assert isinstance(sent, Sent)
    assert (sent.template, sent.category, sent.is_survey, sent.survey_id) == (
        "survey_csat", Category.marketing, True, "csat")
    assert renderer.requests[0].survey == journey.surveys["csat"]


def test_a_capped_survey_is_skipped_not_held():
    journey = make_journey(survey("csat"), send("after"))
    state = make_customer_state(history=[sent_record(T0 - 10 * D, "other", is_survey=True)])
    result = go(journey, state=state)
    assert result.outcomes[0] == Skipped("csat", "survey cap 1 per 30d")
    assert actions(result)[1:] == [("sent", "after"), ("exited", "")]


def test_a_survey_in_quiet_hours_is_held_not_skipped():
    night = at(2026, 11, 23, 22)
    result = go(make_journey(survey("csat")), state=make_customer_state(ROME), now=night)
    assert result.outcomes == (Held("csat", at(2026, 11, 24, 7), "quiet hours 21:00-08:00"),)


def test_an_unknown_survey_is_skipped():
    journey = make_journey(Survey(id="nps", survey="nps"), send("after"))
    result = go(journey, policy=no_limits_policy())
    assert result.outcomes[0] == Skipped("nps", "unknown survey 'nps'")


def test_suppressed_customers_get_no_marketing_but_the_journey_moves_on():
    journey = make_journey(send("promo"), survey("csat"))
    result = go(journey, state=make_customer_state(suppressed="unsubscribed"))
    assert result.outcomes == (Suppressed("promo", "unsubscribed"), Suppressed("csat", "unsubscribed"),
                               Exited("completed"))


# ---------------------------------------------------------------- when advance does nothing

def test_a_run_asked_for_early_is_left_alone():
    journey = make_journey(send("a"))
    run = make_run(journey, next_run_at=T0 + H)
    result = go(journey, run=run)
    assert result.outcomes == () and result.run == run


def test_a_finished_run_is_left_alone():
    journey = make_journey(send("a"))
    run = make_run(journey, status=RunStatus.completed, step_index=1)
    assert go(journey, run=run).outcomes == ()

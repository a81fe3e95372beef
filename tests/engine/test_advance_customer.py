"""One customer's due runs advanced together in SPEC.md §5 order, sharing one send history."""

from __future__ import annotations

from datetime import timedelta

from postsale.engine import advance_customer
from postsale.engine.types import Held, Sent
from postsale.spec.model import Category, Touchpoint
from tests.factories import T0, make_customer_state, make_journey, make_policy, make_run, send, sent_record
from tests.fakes import FakeRenderer

H = timedelta(hours=1)


def journey(id, touchpoint, category=Category.marketing):
    return make_journey(send(f"{id}_mail"), id=id, touchpoint=touchpoint, category=category)


def item(j, *, due=T0):
    return make_run(j, run_id=f"run-{j.id}", next_run_at=due), j


def run_all(items, *, state=None):
    return advance_customer(items, state or make_customer_state(), make_policy(), T0, FakeRenderer())


def first_outcome(results):
    return [(r.run.journey_id, r.outcomes[0].action) for r in results]


def test_issue_resolution_goes_first_and_min_gap_pushes_the_later_marketing_mail():
    care = journey("care", Touchpoint.ongoing_care)
    issue = journey("issue", Touchpoint.issue_resolution)
    results = run_all([item(care), item(issue)])
    assert first_outcome(results) == [("issue", "sent"), ("care", "held")]
    assert results[1].outcomes[0] == Held("care_mail", T0 + 20 * H, "min_gap 20h")


def test_touchpoint_priority_order():
    journeys = [journey(tp.value.replace("_", "-"), tp) for tp in Touchpoint]
    results = run_all([item(j) for j in journeys])
    assert [r.run.journey_id for r in results] == ["issue-resolution", "immediate-post-sale",
                                                  "ongoing-care", "pre-sale"]


def test_transactional_goes_before_marketing_and_counts_toward_the_gap():
    promo = journey("promo", Touchpoint.immediate_post_sale)
    orders = journey("orders", Touchpoint.immediate_post_sale, Category.transactional)
    results = run_all([item(promo), item(orders)])
    assert first_outcome(results) == [("orders", "sent"), ("promo", "held")]


def test_touchpoint_outranks_category():
    shipping = journey("shipping", Touchpoint.immediate_post_sale, Category.transactional)
    issue = journey("issue", Touchpoint.issue_resolution)
    results = run_all([item(shipping), item(issue)])
    assert first_outcome(results) == [("issue", "sent"), ("shipping", "sent")]


def test_then_earliest_due_then_journey_id():
    b = journey("b", Touchpoint.ongoing_care)
    a = journey("a", Touchpoint.ongoing_care)
    late_a, early_b = item(a, due=T0 - H), item(b, due=T0 - 2 * H)
    assert [r.run.journey_id for r in run_all([late_a, early_b])] == ["b", "a"]
    assert [r.run.journey_id for r in run_all([item(b), item(a)])] == ["a", "b"]


def test_each_run_sees_the_customers_history_and_the_sends_before_it():
    orders = journey("orders", Touchpoint.immediate_post_sale, Category.transactional)
    care = journey("care", Touchpoint.ongoing_care)
    # Two marketing emails this week, plus the order confirmation now: the cap of 3 is reached.
    history = [sent_record(T0 - 3 * 24 * H, "x"), sent_record(T0 - 2 * 24 * H, "y")]
    results = run_all([item(care), item(orders)], state=make_customer_state(history=history))
    assert isinstance(results[0].outcomes[0], Sent)
    assert results[1].outcomes[0] == Held("care_mail", T0 + 4 * 24 * H, "marketing cap 3 per 7d")


def test_no_runs_no_results():
    assert run_all([]) == []

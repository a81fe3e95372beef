"""One batch, many events for one customer: each event sees what the earlier ones of the batch did.

Ingest decides a whole batch against one in-memory view of its customers and runs and writes it
at the end (``postsale.store.ingest_state``); these pin that the view behaves as the database
would have, event after event, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlmodel import Session

from models import Customer, Run, Timeline
from postsale.store.dispatch import dispatch
from postsale.store.ingest import enroll, ingest_events
from tests.store.conftest import T0
from tests.store.events import customer, event, order


def runs(ctx, journey_id):
    with Session(ctx.engine) as s:
        return list(s.scalars(select(Run).where(Run.journey_id == journey_id).order_by(Run.entered_at, Run.id)))


def actions(ctx):
    with Session(ctx.engine) as s:
        return [(r.journey_id, r.action, r.reason) for r in s.scalars(select(Timeline).order_by(Timeline.id))]


def test_an_exit_event_after_a_purchase_in_the_same_batch_ends_the_run_it_started(ctx):
    c = customer()
    result = ingest_events(ctx, [order("o-1", T0, c),
                                 event("r", "order.refunded", T0 + timedelta(hours=1), c, order_id="o-1")])
    (run,) = runs(ctx, "post-purchase")
    assert result.entered == [run.id]
    assert (run.status, run.exit_reason, run.next_run_at) == ("exited", "exit_when order.refunded", None)
    assert actions(ctx) == [("post-purchase", "entered", None),
                            ("post-purchase", "exited", "exit_when order.refunded")]


def test_an_exit_event_older_than_the_run_it_would_end_leaves_it_alone(ctx):
    c = customer()
    ingest_events(ctx, [order("o-1", T0, c), event("r", "order.refunded", T0 - timedelta(hours=1), c, order_id="o-0")])
    (run,) = runs(ctx, "post-purchase")
    assert run.status == "active"


def test_a_run_ended_earlier_in_the_batch_still_counts_for_reentry_never(ctx):
    c = customer()
    ingest_events(ctx, [order("o-1", T0, c),
                        event("x", "order.cancelled", T0 + timedelta(hours=1), c, order_id="o-1"),
                        order("o-2", T0 + timedelta(hours=2), c)])
    (run,) = runs(ctx, "post-purchase")
    assert run.status == "exited"


def test_reentry_always_starts_one_run_per_event_of_the_batch(ctx):
    c = customer()
    result = ingest_events(ctx, [event(f"s{n}", "order.shipped", T0, c) for n in range(3)])
    assert len(runs(ctx, "order-notice")) == 3 == len(set(result.entered))


def test_a_wait_for_wake_is_seen_by_the_next_event_of_the_batch(ctx):
    c = customer()
    ingest_events(ctx, [event("t1", "ticket.opened", T0, c)])
    dispatch(ctx)                                   # on_it sent, then waiting for ticket.resolved
    (waiting,) = runs(ctx, "issue-resolution")
    assert (waiting.status, waiting.waiting_for) == ("waiting", "ticket.resolved")
    later = T0 + timedelta(hours=2)
    ctx.clock.set(later)
    result = ingest_events(ctx, [event("t1-done", "ticket.resolved", later, c),
                                 event("t2", "ticket.opened", later, c),
                                 event("t2-done", "ticket.resolved", later, c)])
    first, second = runs(ctx, "issue-resolution")
    assert first.id == waiting.id and first.status == "active" and first.next_run_at is not None
    assert first.context["wake_event"]["id"] == "t1-done"    # woken once: the second is not for it
    assert first.context["trigger"]["id"] == "t1"            # the rest of its context is kept
    assert second.status == "active" and second.context.get("wake_event") is None
    assert result.entered == [second.id] and result.customers == {c["id"]}
    with Session(ctx.engine) as s:
        assert s.get(Customer, c["id"]).open_tickets == 0


def test_answers_reach_the_runs_of_the_batch_and_keep_their_context(ctx):
    c = customer()
    ingest_events(ctx, [order("o-1", T0, c)])
    ingest_events(ctx, [order("o-2", T0, customer("c-7")),
                        event("a1", "survey.answered", T0, c, survey="csat", journey="post-purchase",
                              answers={"score": 5}),
                        event("a2", "survey.answered", T0, c, survey="csat", journey="post-purchase",
                              answers={"comment": "ok"})])
    mine = [r for r in runs(ctx, "post-purchase") if r.customer_id == c["id"]]
    (run,) = mine
    assert run.context["answers"] == {"csat": {"score": 5, "comment": "ok"}}
    assert run.context["trigger"]["id"] == "o-1" and run.context["trigger"]["data"]["total"] == 129.0


def test_what_each_event_says_about_its_customer_is_merged_in_order(ctx):
    ingest_events(ctx, [event("a", "order.shipped", T0, customer(attributes={"vip": True}, locale="it")),
                        event("b", "order.shipped", T0, customer(name="Ada", attributes={"tier": 2})),
                        event("c", "ticket.opened", T0, customer()),
                        event("d", "ticket.opened", T0, customer())])
    with Session(ctx.engine) as s:
        row = s.get(Customer, "c-42")
    # the latest name wins ("C-42" again after "Ada"), a locale stays until another comes, attributes add up
    assert (row.name, row.locale, row.attributes, row.open_tickets) == ("C-42", "it", {"vip": True, "tier": 2}, 2)


def test_a_run_ingest_starts_is_the_row_enroll_writes(ctx):
    """The batch path and ``enroll`` (dispatch's StartJourney) write a new run the same way."""
    ingest_events(ctx, [order("o-1", T0, customer("c-1"))])
    (batch_run,) = runs(ctx, "post-purchase")
    journey = ctx.catalog.journeys["post-purchase"]
    with Session(ctx.engine) as s:
        run_id = enroll(s, ctx, journey, "c-2", trigger=batch_run.context["trigger"], answers={},
                        key="o-1/post-purchase/c-2", now=ctx.clock.now(), trigger_event_id="o-1")
        s.commit()
        other = s.get(Run, run_id)
    columns = [c.name for c in Run.__table__.columns if c.name not in ("id", "customer_id")]
    assert {n: getattr(other, n) for n in columns} == {n: getattr(batch_run, n) for n in columns}
    with Session(ctx.engine) as s:   # and the same reentry rules: never means never
        assert enroll(s, ctx, journey, "c-1", trigger={}, answers={}, key="again", now=ctx.clock.now()) is None

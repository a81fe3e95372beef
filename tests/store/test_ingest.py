"""Ingest against a real SQLite file: validation, dedupe, enrollment rules, fan-out, effects."""

from __future__ import annotations

import shutil
from datetime import timedelta

from sqlalchemy import select
from sqlmodel import Session

from models import Customer, Run, SurveyResponse, Suppression, Timeline
from postsale.store.dispatch import dispatch
from postsale.store.ingest import ingest_events, ingest_items, ingest_text
from postsale.store.sql import email_hash
from tests.store.conftest import FIXTURE, T0

ROOT = FIXTURE.parents[2]
from tests.store.events import customer, event, order, raw


def runs(ctx, **where):
    with Session(ctx.engine) as s:
        q = select(Run)
        for key, value in where.items():
            q = q.where(getattr(Run, key) == value)
        return list(s.scalars(q))


def test_bad_event_is_rejected_naming_the_field_and_the_rest_of_the_batch_goes_through(ctx):
    good = raw("e1", "order.placed", T0, customer("c-1"), order_id="1", total=10.0, items=[])
    bad_time = raw("e2", "order.placed", T0, customer("c-2"))
    bad_time["occurred_at"] = "yesterday"
    bad_email = raw("e3", "order.placed", T0, customer("c-3", email="not-an-email"))
    bad_tz = raw("e4", "order.placed", T0, customer("c-4", tz="Mars/Olympus"))
    no_id = {"type": "order.placed", "occurred_at": T0.isoformat(), "customer": customer("c-5")}
    result = ingest_items(ctx, [good, bad_time, bad_email, bad_tz, no_id])
    assert result.accepted == ["e1"]
    assert [(r.index, r.field) for r in result.rejected] == [
        (1, "occurred_at"), (2, "customer.email"), (3, "customer.timezone"), (4, "id")]
    assert "not-an-email" in result.rejected[1].reason


def test_ndjson_with_a_broken_line_keeps_the_good_lines(ctx):
    text = "\n".join([
        '{"id": "n1", "type": "order.shipped", "occurred_at": "2026-11-02T09:00:00Z", "customer": {"id": "c", "email": "c@example.com"}}',
        '{"id": "n2", "type": ',
        '{"id": "n3", "type": "order.shipped", "occurred_at": "2026-11-02T09:00:00Z", "customer": {"id": "c", "email": "c@example.com"}}',
    ])
    result = ingest_text(ctx, text)
    assert result.accepted == ["n1", "n3"]
    assert result.rejected[0].field == "json"


def test_the_same_event_id_twice_is_accepted_once_and_reported_as_duplicate(ctx):
    first = ingest_events(ctx, [order("o-1", T0, customer())])
    again = ingest_events(ctx, [order("o-1", T0, customer())])
    assert first.accepted == ["o-1"] and again.duplicates == ["o-1"] and not again.accepted
    assert len(runs(ctx, journey_id="post-purchase")) == 1


def test_reentry_never_and_one_active_run_per_journey(ctx):
    ingest_events(ctx, [order("o-1", T0, customer()), order("o-2", T0 + timedelta(days=1), customer())])
    assert len(runs(ctx, journey_id="post-purchase")) == 1


def test_reentry_always_starts_a_run_per_event(ctx):
    c = customer()
    ingest_events(ctx, [event("s1", "order.shipped", T0, c), event("s2", "order.shipped", T0, c)])
    assert len(runs(ctx, journey_id="order-notice")) == 2


def test_reentry_after_waits_the_given_time_since_the_last_entry(make_ctx, tmp_path):
    journeys = tmp_path / "journeys"
    shutil.copytree(FIXTURE / "journeys", journeys)
    (journeys / "order-notice.yaml").write_text(
        (journeys / "order-notice.yaml").read_text().replace("reentry: always", "reentry: after 10d"))
    ctx = make_ctx(journeys=journeys)
    c = customer()
    ingest_events(ctx, [event("s1", "order.shipped", T0, c)])
    dispatch(ctx)  # the one-step journey completes
    ctx.clock.set(T0 + timedelta(days=3))
    ingest_events(ctx, [event("s2", "order.shipped", T0 + timedelta(days=3), c)])
    assert len(runs(ctx, journey_id="order-notice")) == 1
    ctx.clock.set(T0 + timedelta(days=11))
    ingest_events(ctx, [event("s3", "order.shipped", T0 + timedelta(days=11), c)])
    assert len(runs(ctx, journey_id="order-notice")) == 2


def test_trigger_condition_false_does_not_enroll(ctx):
    ingest_events(ctx, [order("o-0", T0, customer(), total=0.0)])
    assert runs(ctx, journey_id="post-purchase") == []


def test_customer_is_upserted_and_attributes_merged(ctx):
    ingest_events(ctx, [event("a", "order.shipped", T0, customer(attributes={"vip": True}))])
    ingest_events(ctx, [event("b", "order.shipped", T0, customer(name="Ada", attributes={"tier": 2}))])
    with Session(ctx.engine) as s:
        row = s.get(Customer, "c-42")
    assert row.name == "Ada" and row.attributes == {"vip": True, "tier": 2}


def test_incident_fans_out_to_buyers_of_the_skus_in_the_date_range(ctx):
    early, late = T0 - timedelta(days=40), T0 - timedelta(days=2)
    ingest_events(ctx, [
        order("o-a", late, customer("buyer-recent"), skus=[("GRINDER-2", "kitchen")]),
        order("o-b", early, customer("buyer-old"), skus=[("GRINDER-2", "kitchen")]),
        order("o-c", late, customer("other-sku"), skus=[("LAMP-3", "home")]),
        event("inc", "incident.declared", T0, None, skus=["GRINDER-2"],
              purchased_after=(T0 - timedelta(days=30)).isoformat()),
    ])
    assert sorted(r.customer_id for r in runs(ctx, journey_id="incident")) == ["buyer-recent"]


def test_an_incident_audience_larger_than_one_query_is_read_in_chunks(ctx, monkeypatch):
    # PostgreSQL takes at most 65,535 parameters a statement: the audience is locked in chunks.
    import postsale.store.ingest as ingest_module
    monkeypatch.setattr(ingest_module, "AUDIENCE_CHUNK", 2)
    buyers = [f"buyer-{i}" for i in range(5)]
    ingest_events(ctx, [order(f"o-{b}", T0 - timedelta(days=1), customer(b), skus=[("GRINDER-2", "kitchen")])
                        for b in buyers] + [event("inc-big", "incident.declared", T0, None, skus=["GRINDER-2"])])
    assert sorted(r.customer_id for r in runs(ctx, journey_id="incident")) == buyers


def test_a_chunked_incident_leaves_later_events_of_the_batch_a_true_view(ctx, monkeypatch):
    # The audience is worked on and forgotten a chunk at a time; the batch's own customers stay.
    import postsale.store.ingest as ingest_module
    monkeypatch.setattr(ingest_module, "AUDIENCE_CHUNK", 2)
    buyers = [f"buyer-{i}" for i in range(5)]
    result = ingest_events(ctx, [order(f"o-{b}", T0 - timedelta(days=1), customer(b), skus=[("GRINDER-2", "kitchen")])
                                 for b in buyers]
                           + [event("inc", "incident.declared", T0, None, skus=["GRINDER-2"]),
                              event("refund", "order.refunded", T0 + timedelta(hours=1), customer("buyer-3"),
                                    order_id="o-buyer-3"),
                              order("o-again", T0 + timedelta(hours=2), customer("buyer-1"))])
    assert sorted(r.customer_id for r in runs(ctx, journey_id="incident")) == buyers
    assert {r.customer_id: r.status for r in runs(ctx, journey_id="post-purchase")} == {
        **{b: "active" for b in buyers}, "buyer-3": "exited"}
    assert len(result.entered) == 10   # five post-purchase runs, five incident runs; no second order run
    with Session(ctx.engine) as s:
        actions = [(t.journey_id, t.action, t.customer_id) for t in s.scalars(select(Timeline).order_by(Timeline.id))]
    assert actions[5:] == [("incident", "entered", b) for b in buyers] + [("post-purchase", "exited", "buyer-3")]


def test_a_resolution_in_chunks_wakes_every_purchaser_waiting_for_it(make_ctx, monkeypatch):
    import postsale.store.ingest as ingest_module
    ctx = make_ctx(journeys=ROOT / "journeys", templates=ROOT / "templates")
    monkeypatch.setattr(ingest_module, "AUDIENCE_CHUNK", 2)
    buyers = [f"buyer-{i}" for i in range(5)]
    ingest_events(ctx, [order(f"o-{b}", T0 - timedelta(days=1), customer(b), skus=[("GRINDER-2", "kitchen")])
                        for b in buyers] + [event("inc", "incident.declared", T0, None, skus=["GRINDER-2"],
                                                  incident_id="INC-1", product="Grinder", title="t",
                                                  description="d", action="a", advice="v")])
    dispatch(ctx, customer_ids=buyers)
    assert {r.status for r in runs(ctx, journey_id="incident-notice")} == {"waiting"}
    ingest_events(ctx, [event("ok", "incident.resolved", T0 + timedelta(hours=1), None, skus=["GRINDER-2"],
                              incident_id="INC-1")])
    woken = runs(ctx, journey_id="incident-notice")
    assert sorted(r.customer_id for r in woken if r.status == "active") == buyers
    assert all(r.context["wake_event"]["id"] == "ok" for r in woken)


def test_suppression_events_apply_at_once(ctx):
    c = customer()
    ingest_events(ctx, [event("u", "email.unsubscribed", T0, c)])
    with Session(ctx.engine) as s:
        row = s.scalar(select(Suppression).where(Suppression.email_hash == email_hash(c["email"])))
    assert row.reason == "unsubscribed"


def test_exit_when_ends_the_run_when_the_event_arrives(ctx):
    c = customer()
    ingest_events(ctx, [order("o-1", T0, c)])
    ingest_events(ctx, [event("r", "order.refunded", T0 + timedelta(hours=1), c, order_id="o-1")])
    (run,) = runs(ctx, journey_id="post-purchase")
    assert run.status == "exited" and run.exit_reason == "exit_when order.refunded"


def test_pre_sale_journeys_exit_on_purchase_by_default(ctx):
    c = customer()
    ingest_events(ctx, [event("cart", "cart.abandoned", T0, c, items=[])])
    ingest_events(ctx, [order("o-1", T0 + timedelta(minutes=30), c)])
    (run,) = runs(ctx, journey_id="nudge")
    assert run.status == "exited" and run.exit_reason == "exit_when order.placed"


def test_survey_answers_are_stored_once_and_updated(ctx):
    c = customer()
    ingest_events(ctx, [order("o-1", T0, c)])
    answer = dict(survey="csat", journey="post-purchase", message_id="m1")
    ingest_events(ctx, [event("a1", "survey.answered", T0, c, answers={"score": 2}, **answer)])
    ingest_events(ctx, [event("a2", "survey.answered", T0, c, answers={"score": 4}, **answer)])
    with Session(ctx.engine) as s:
        responses = list(s.scalars(select(SurveyResponse)))
    assert len(responses) == 1 and responses[0].answers == {"score": 4}
    (run,) = runs(ctx, journey_id="post-purchase")
    assert run.context["answers"] == {"csat": {"score": 4}}


def test_entered_is_on_the_timeline(ctx):
    ingest_events(ctx, [order("o-1", T0, customer())])
    with Session(ctx.engine) as s:
        rows = list(s.scalars(select(Timeline)))
    assert [(r.journey_id, r.action) for r in rows] == [("post-purchase", "entered")]

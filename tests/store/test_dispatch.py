"""Dispatch and delivery against a real SQLite file: the outbox, guardrails, holds, delivery."""

from __future__ import annotations

import email
import shutil
from datetime import timedelta

from sqlalchemy import select
from sqlmodel import Session

from models import Message, Run, Timeline
from postsale.delivery.memory import MemoryTransport
from postsale.delivery.outbox import OutboxTransport
from postsale.store.delivery import deliver
from postsale.store.dispatch import dispatch
from postsale.store.ingest import ingest_events
from tests.store.conftest import FIXTURE, T0
from tests.store.events import customer, event, order


def messages(ctx):
    with Session(ctx.engine) as s:
        return list(s.scalars(select(Message).order_by(Message.created_at, Message.id)))


def timeline(ctx, action=None):
    with Session(ctx.engine) as s:
        q = select(Timeline).order_by(Timeline.id)
        if action:
            q = q.where(Timeline.action == action)
        return list(s.scalars(q))


def test_a_purchase_queues_the_thank_you_once(ctx):
    ingest_events(ctx, [order("o-1", T0, customer())])
    first = dispatch(ctx)
    second = dispatch(ctx)
    (msg,) = messages(ctx)
    assert (msg.template, msg.status, msg.category, msg.to_email) == ("thank_you", "queued", "marketing", "c-42@example.com")
    assert msg.subject == "Thanks for your order, C-42"
    assert "List-Unsubscribe" in msg.headers and "unsubscribe" in msg.html.lower()
    assert first.actions["sent"] == 1 and second.runs == 0
    with Session(ctx.engine) as s:
        run = s.scalar(select(Run))
    assert run.step_id is not None and run.next_run_at is not None and run.status == "active"


def test_marketing_in_quiet_hours_is_held_until_morning_local_time(ctx):
    late = T0.replace(hour=21, minute=30)  # 22:30 in Rome
    ctx.clock.set(late)
    ingest_events(ctx, [order("o-1", late, customer())])
    dispatch(ctx)
    assert messages(ctx) == []
    (held,) = timeline(ctx, "held")
    assert "quiet hours" in held.reason and "2026-11-03T07:00:00Z" in held.reason  # 08:00 in Rome
    ctx.clock.set(T0.replace(day=3, hour=7))
    dispatch(ctx)
    assert [m.template for m in messages(ctx)] == ["thank_you"]


def test_transactional_mail_ignores_quiet_hours(ctx):
    late = T0.replace(hour=22)
    ctx.clock.set(late)
    ingest_events(ctx, [event("s1", "order.shipped", late, customer())])
    dispatch(ctx)
    assert [m.template for m in messages(ctx)] == ["shipped"]


def test_marketing_is_held_while_a_ticket_is_open_and_goes_when_it_is_resolved(ctx):
    c = customer()
    ingest_events(ctx, [event("t1", "ticket.opened", T0, c), order("o-1", T0, c)])
    dispatch(ctx)
    assert [m.template for m in messages(ctx)] == ["on_it"]  # transactional, issue_resolution first
    assert any(r.reason == "ticket open" for r in timeline(ctx, "held"))
    later = T0 + timedelta(hours=2)
    ctx.clock.set(later)
    ingest_events(ctx, [event("t2", "ticket.resolved", later, c)])
    dispatch(ctx)
    # min_gap 20h counts the transactional notice, then quiet hours (Rome) push it to 08:00
    assert [m.template for m in messages(ctx)] == ["on_it"]
    assert timeline(ctx, "held")[-1].reason == "min_gap 20h until 2026-11-03T07:00:00Z"
    ctx.clock.set(T0 + timedelta(hours=22))
    dispatch(ctx)
    assert [m.template for m in messages(ctx)] == ["on_it", "thank_you"]


def test_unsubscribed_customers_get_transactional_mail_but_no_marketing(ctx):
    c = customer()
    ingest_events(ctx, [event("u1", "email.unsubscribed", T0, c)])
    ingest_events(ctx, [order("o-1", T0, c), event("s1", "order.shipped", T0, c)])
    dispatch(ctx)
    assert [m.template for m in messages(ctx)] == ["shipped"]
    (row,) = timeline(ctx, "suppressed")
    assert row.step_id == "thank_you" and row.reason == "unsubscribed"


def test_a_broken_journey_does_not_stop_the_others(make_ctx, tmp_path):
    journeys = tmp_path / "journeys"
    shutil.copytree(FIXTURE / "journeys", journeys)
    (journeys / "broken.yaml").write_text("journey: broken\nname: x\ntouchpoint: nowhere\ntrigger: {event: order.placed}\nsteps: []\n")
    ctx = make_ctx(journeys=journeys)
    assert any("broken.yaml" in str(p) for p in ctx.catalog.errors)
    ingest_events(ctx, [order("o-1", T0, customer())])
    dispatch(ctx)
    assert [m.template for m in messages(ctx)] == ["thank_you"]


def test_a_template_that_fails_to_render_skips_only_its_step(make_ctx, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(FIXTURE / "templates", templates)
    (templates / "thank_you.html.j2").write_text(
        '{% extends "_layout.html.j2" %}{% block subject %}Hi {{ customer.nickname }}{% endblock %}')
    ctx = make_ctx(templates=templates)
    ingest_events(ctx, [order("o-1", T0, customer())])
    dispatch(ctx)
    assert messages(ctx) == []
    (skipped,) = timeline(ctx, "skipped")
    assert skipped.step_id == "thank_you" and "nickname" in skipped.reason
    with Session(ctx.engine) as s:  # the run goes on to its next step
        assert s.scalar(select(Run)).step_id == "tips"  # past the wait: the step it runs next


def test_removing_a_journey_file_stops_its_runs_with_a_reason(make_ctx, tmp_path):
    journeys = tmp_path / "journeys"
    shutil.copytree(FIXTURE / "journeys", journeys)
    ctx = make_ctx(journeys=journeys)
    ingest_events(ctx, [event("cart", "cart.abandoned", T0, customer(), items=[])])
    (journeys / "nudge.yaml").unlink()
    later = make_ctx(journeys=journeys, url=str(ctx.engine.url))
    later.clock.set(T0 + timedelta(hours=2))
    dispatch(later)
    with Session(later.engine) as s:
        run = s.scalar(select(Run).where(Run.journey_id == "nudge"))
    assert run.status == "exited" and run.exit_reason == "journey removed"


def test_delivery_sends_queued_mail_and_retries_transient_failures(ctx):
    ingest_events(ctx, [event("s1", "order.shipped", T0, customer()), event("s2", "order.shipped", T0, customer())])
    dispatch(ctx)
    transport = MemoryTransport()
    transport.fail_next(1)
    first = deliver(ctx, transport)
    assert (first.sent, first.retried) == (1, 1)
    ctx.clock.set(T0 + timedelta(hours=2))
    second = deliver(ctx, transport)
    assert second.sent == 1
    assert sorted(m.status for m in messages(ctx)) == ["sent", "sent"]
    assert all(m.provider_id for m in messages(ctx))
    assert deliver(ctx, transport).sent == 0  # nothing is sent twice


def test_outbox_transport_writes_real_mime_files(ctx, tmp_path):
    ingest_events(ctx, [order("o-1", T0, customer(name="Zoë"))])
    dispatch(ctx)
    deliver(ctx, OutboxTransport(tmp_path / "outbox"))
    (path,) = (tmp_path / "outbox").glob("*.eml")
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["To"].addresses[0].addr_spec == "c-42@example.com"
    kinds = sorted(part.get_content_type() for part in parsed.walk() if not part.is_multipart())
    assert kinds == ["text/html", "text/plain"]

"""The whole path on the real engine: dispatch → SendGrid (fake) → signed events → engine.

An incident notice with identical content goes out as one request of personalizations; an
open wakes a run waiting for ``email.opened``; a bounce suppresses the next marketing email.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models import Message, Run, Timeline
from postsale.clock import VirtualClock
from postsale.settings import DEV_SECRET, Settings
from postsale.store.context import Context
from postsale.store.delivery import deliver
from postsale.store.dispatch import dispatch
from postsale.store.ingest import ingest_events
from tests.delivery.webhook_kit import Signer, WebhookServer
from tests.store.conftest import FIXTURE, T0
from tests.store.events import customer, event, order

RECALL = """journey: recall
name: Grinder recall
touchpoint: issue_resolution
category: transactional
trigger:
  event: incident.declared
entry:
  reentry: always
steps:
  - send: recall_notice
"""
FOLLOW_UP = """journey: shipped-follow-up
name: Shipped, then a hand when opened
touchpoint: immediate_post_sale
category: transactional
trigger:
  event: order.shipped
steps:
  - send: shipped
  - wait_for: email.opened
    timeout: 3d
  - send: on_it
"""
RECALL_TEMPLATE = """{% extends "_layout.html.j2" %}
{% block subject %}Grinder recall{% endblock %}
{% block body %}<p>Please stop using the GRINDER-1 and bring it back: we replace it.</p>{% endblock %}
"""


@pytest.fixture
def world(tmp_path: Path):
    journeys, templates = tmp_path / "journeys", tmp_path / "templates"
    journeys.mkdir()
    for name in ("policy.yaml", "post-purchase.yaml", "issue-resolution.yaml"):
        shutil.copy(FIXTURE / "journeys" / name, journeys / name)
    (journeys / "recall.yaml").write_text(RECALL)
    (journeys / "shipped-follow-up.yaml").write_text(FOLLOW_UP)
    shutil.copytree(FIXTURE / "templates", templates)
    (templates / "recall_notice.html.j2").write_text(RECALL_TEMPLATE)
    ctx = Context.build(database_url=f"sqlite:///{tmp_path}/e2e.db", journeys=journeys, templates=templates,
                        secret=DEV_SECRET, clock=VirtualClock(T0))
    signer = Signer.generate()
    webhook = WebhookServer(ctx, Settings(_env_file=None, sendgrid_webhook_public_key=signer.public_key), signer)
    yield ctx, webhook
    webhook.stop()
    ctx.engine.dispose()


def _messages(ctx, **where):
    with Session(ctx.engine) as s:
        query = select(Message).order_by(Message.created_at, Message.id)
        for key, value in where.items():
            query = query.where(getattr(Message, key) == value)
        return list(s.scalars(query))


def test_mail_goes_out_and_what_happens_to_it_comes_back(world, fake, sendgrid):
    ctx, webhook = world
    people = [customer(f"c-{i}", email=f"c-{i}@example.com") for i in range(3)]
    ingest_events(ctx, [order(f"o-{i}", T0, p, skus=(("GRINDER-1", "kitchen"),)) for i, p in enumerate(people)])
    dispatch(ctx)
    ctx.clock.advance(minutes=5)
    ingest_events(ctx, [event("inc-1", "incident.declared", ctx.clock.now(), skus=["GRINDER-1"])])
    dispatch(ctx)
    assert deliver(ctx, sendgrid).sent == 6
    assert fake.problems() == []
    sizes = sorted(len(r.payload["personalizations"]) for r in fake.received)
    assert sizes == [1, 1, 1, 3]                       # three thank-yous, one shared recall request
    (shared,) = [r for r in fake.received if len(r.payload["personalizations"]) == 3]
    recall_ids = [m.id for m in _messages(ctx, journey_id="recall")]
    assert [p["custom_args"]["postsale_message_id"] for p in shared.payload["personalizations"]] == recall_ids
    assert all(p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
               for p in shared.payload["personalizations"])

    # c-1's order ships; the notice goes out and the run waits for an open.
    ctx.clock.advance(hours=1)
    ingest_events(ctx, [event("s-1", "order.shipped", ctx.clock.now(), people[1], order_id="o-1")])
    dispatch(ctx)
    deliver(ctx, sendgrid)
    (shipped,) = _messages(ctx, journey_id="shipped-follow-up")
    assert shipped.status == "sent"
    opened = [e for e in fake.events("open") if e["postsale_message_id"] == shipped.id]
    bounced = [e for e in fake.events("bounce", type="bounce", reason="550 unknown user")
               if e["postsale_message_id"] == _messages(ctx, journey_id="post-purchase", customer_id="c-2")[0].id]
    response = webhook.post(fake.events("delivered") + opened + bounced)
    assert response.status_code == 200 and response.json()["engine_events"] == 9   # 7 delivered, 1 open, 1 bounce

    # The open woke the waiting run: its next step goes out now, not in three days.
    with Session(ctx.engine) as s:
        run = s.scalar(select(Run).where(Run.journey_id == "shipped-follow-up"))
        assert run.status == "active" and run.context["wake_event"]["type"] == "email.opened"
    dispatch(ctx)
    assert [m.template for m in _messages(ctx, journey_id="shipped-follow-up")] == ["shipped", "on_it"]

    # The bounce suppressed c-2's marketing before the next dispatch.
    ctx.clock.advance(days=3)
    dispatch(ctx)
    with Session(ctx.engine) as s:
        suppressed = [t for t in s.scalars(select(Timeline).where(Timeline.action == "suppressed"))]
    assert [t.customer_id for t in suppressed] == ["c-2"]
    tips = {m.customer_id for m in _messages(ctx, template="kettle_tips")}
    assert "c-0" in tips and "c-2" not in tips        # (c-1 is over the frequency cap by now)

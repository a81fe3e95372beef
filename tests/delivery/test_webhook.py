"""POST /webhooks/sendgrid on a real uvicorn: signatures, replays, mapping, state, suppressions."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from models import DeliveryEvent, Event, Suppression
from postsale.settings import Settings
from postsale.store.delivery import deliver
from postsale.store.delivery_events import delivery_counts
from postsale.store.report import build_report
from postsale.store.sql import email_hash
from tests.delivery.conftest import queue_messages, rows
from tests.delivery.webhook_kit import Signer, WebhookServer


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def webhook(ctx, signer):
    server = WebhookServer(ctx, Settings(_env_file=None, sendgrid_webhook_public_key=signer.public_key), signer)
    yield server
    server.stop()


@pytest.fixture
def sent(ctx, fake, sendgrid):
    """Four messages handed to the fake SendGrid: ids in order."""
    ids = queue_messages(ctx, 4)
    assert deliver(ctx, sendgrid).sent == 4
    return ids


def _count(ctx, model, *where) -> int:
    with Session(ctx.engine) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def _by_id(events, mid):
    return [e for e in events if e.get("postsale_message_id") == mid]


def test_a_signed_batch_is_stored_mapped_and_applied(ctx, fake, sent, webhook):
    m0, m1, m2, m3 = sent
    delivered = fake.events("delivered")
    batch = [*delivered,
             *_by_id(fake.events("open", sg_machine_open=False), m0),
             *_by_id(fake.events("click", url="https://acme.example/tips"), m1),
             *_by_id(fake.events("bounce", type="bounce", reason="550 5.1.1 unknown user"), m2),
             *_by_id(fake.events("spamreport"), m3),
             {"event": "machine_learning_magic", "email": "x@example.com", "timestamp": 1},
             {"event": "group_resubscribe", "email": "c-m0@example.com", "timestamp": 1, "asm_group_id": 77},
             "not an event"]
    response = webhook.post(batch)
    assert response.status_code == 200, response.text
    counts = response.json()
    assert counts["received"] == 11 and counts["stored"] == 9 and counts["duplicates"] == 0
    assert counts["ignored"] == 1 and counts["ignored_types"] == {"machine_learning_magic": 1}
    assert counts["invalid"] == 1
    assert counts["by_type"] == {"delivered": 4, "opened": 1, "clicked": 1, "bounced": 1, "complained": 1,
                                 "group_resubscribed": 1}
    states = {mid: m.delivery_state for mid, m in rows(ctx).items()}
    assert states == {m0: "opened", m1: "clicked", m2: "bounced", m3: "complained"}
    # suppressions apply at once, before the next dispatch
    with Session(ctx.engine) as s:
        reasons = {row.email_hash: row.reason for row in s.scalars(select(Suppression))}
    assert reasons == {email_hash("c-m2@example.com"): "bounced", email_hash("c-m3@example.com"): "complained"}
    # engine events for the message's customer, one per message and type
    with Session(ctx.engine) as s:
        engine = sorted((e.type, e.customer_id, e.data["message_id"]) for e in s.scalars(
            select(Event).where(Event.type.like("email.%"))))
    assert ("email.opened", "c-m0", m0) in engine and ("email.clicked", "c-m1", m1) in engine
    assert ("email.bounced", "c-m2", m2) in engine and ("email.complained", "c-m3", m3) in engine
    assert sum(1 for t, *_ in engine if t == "email.delivered") == 4
    # stored payloads keep no address in clear
    with Session(ctx.engine) as s:
        assert all("email" not in row.payload for row in s.scalars(select(DeliveryEvent)))


def test_a_replayed_batch_changes_nothing(ctx, fake, sent, webhook):
    batch = fake.events("delivered") + fake.events("open")
    first = webhook.post(batch).json()
    ctx.clock.advance(hours=3)                 # SendGrid retries for 24 hours, freshly signed each time
    again = webhook.post(batch).json()
    assert first["stored"] == 8 and again["stored"] == 0 and again["duplicates"] == 8
    assert again["engine_events"] == 0
    assert _count(ctx, DeliveryEvent) == 8
    assert _count(ctx, Event, Event.type.like("email.%")) == 8


def test_duplicates_inside_one_batch_and_events_without_ids(ctx, fake, sent, webhook):
    (bounce,) = _by_id(fake.events("bounce", type="bounce", reason="mailbox full"), sent[1])
    async_bounce = {k: v for k, v in bounce.items() if k not in ("sg_event_id", "postsale_message_id")}
    response = webhook.post([async_bounce, dict(reversed(list(async_bounce.items())))]).json()
    assert (response["stored"], response["duplicates"]) == (1, 1)      # hashed key, order-independent
    assert rows(ctx)[sent[1]].delivery_state == "bounced"               # matched by provider id + address
    assert webhook.post([async_bounce]).json()["duplicates"] == 1


def test_an_unknown_address_is_still_suppressed(ctx, webhook):
    response = webhook.post([{"event": "bounce", "type": "bounce", "email": "Stranger@Example.com",
                              "timestamp": 1790000000, "reason": "550 no such user"}])
    assert response.json()["unmatched"] == 1
    assert _count(ctx, Suppression, Suppression.email_hash == email_hash("stranger@example.com")) == 1


def test_blocked_and_machine_opens_do_not_suppress_or_count_as_reads(ctx, fake, sent, webhook):
    m0, m1 = sent[:2]
    batch = [*_by_id(fake.events("bounce", type="blocked", reason="IP listed"), m0),
             *_by_id(fake.events("open", sg_machine_open=True), m1)]
    assert webhook.post(batch).json()["stored"] == 2
    assert rows(ctx)[m0].delivery_state == "blocked" and rows(ctx)[m1].delivery_state == "delivered"
    assert _count(ctx, Suppression) == 0 and _count(ctx, Event, Event.type.like("email.%")) == 0


def test_states_never_move_backwards(ctx, fake, sent, webhook):
    m0 = sent[0]
    webhook.post(_by_id(fake.events("click"), m0))
    webhook.post(_by_id(fake.events("delivered"), m0) + _by_id(fake.events("deferred"), m0))
    assert rows(ctx)[m0].delivery_state == "clicked"


@pytest.mark.parametrize("case", ["bad signature", "tampered body", "other key", "missing headers",
                                  "old timestamp", "future timestamp", "garbage signature"])
def test_unsigned_or_stale_requests_are_refused(ctx, fake, sent, webhook, signer, case):
    body = json.dumps(fake.events("delivered")).encode()
    now = int(ctx.clock.now().timestamp())
    headers = signer.headers(body, now)
    if case == "bad signature":
        headers = {**headers, "X-Twilio-Email-Event-Webhook-Signature": signer.headers(b"[]", now)[
            "X-Twilio-Email-Event-Webhook-Signature"]}
    elif case == "tampered body":
        body = body.replace(b"delivered", b"bounce")
    elif case == "other key":
        headers = Signer.generate().headers(body, now)
    elif case == "missing headers":
        headers = {"Content-Type": "application/json"}
    elif case == "old timestamp":
        headers = signer.headers(body, now - 11 * 60)                 # signed, but captured 11 min ago
    elif case == "future timestamp":
        headers = signer.headers(body, now + 11 * 60)
    elif case == "garbage signature":
        headers = {**headers, "X-Twilio-Email-Event-Webhook-Signature": "%%%not-base64"}
    response = webhook.post(None, body=body, headers=headers)
    assert response.status_code == 403, response.text
    assert _count(ctx, DeliveryEvent) == 0 and _count(ctx, Suppression) == 0


def test_a_recent_timestamp_is_accepted(ctx, fake, sent, webhook):
    assert webhook.post(fake.events("delivered"), age=9 * 60).status_code == 200


def test_a_signed_body_that_is_not_an_event_array_is_a_400(webhook):
    assert webhook.post({"event": "delivered"}).status_code == 400
    assert webhook.post(None, body=b"not json", headers=webhook.signer.headers(b"not json", int(
        webhook.ctx.clock.now().timestamp()))).status_code == 400


def test_without_a_public_key_events_are_refused_with_503(ctx, signer):
    server = WebhookServer(ctx, Settings(_env_file=None), signer)
    try:
        assert server.post([]).status_code == 503
    finally:
        server.stop()
    bad = WebhookServer(ctx, Settings(_env_file=None, sendgrid_webhook_public_key="bm90IGEga2V5"), signer)
    try:
        assert bad.post([]).status_code == 503
    finally:
        bad.stop()


def test_the_report_shows_delivery_outcomes_per_journey(ctx, fake, sent, webhook):
    m0, m1, m2, m3 = sent
    webhook.post(fake.events("delivered") + _by_id(fake.events("open"), m0) + _by_id(fake.events("click"), m1)
                 + _by_id(fake.events("bounce", type="bounce"), m2) + _by_id(fake.events("spamreport"), m3))
    (journey,) = build_report(ctx.engine, since=ctx.clock.now() - timedelta(days=1))
    assert journey.delivery["sent"] == 4
    assert {k: journey.delivery[k] for k in ("opened", "clicked", "bounced", "complained")} == {
        "opened": 1, "clicked": 1, "bounced": 1, "complained": 1}
    funnel = delivery_counts(ctx.engine, since=ctx.clock.now() - timedelta(days=1))["post-purchase"]
    assert (funnel["delivered"], funnel["opened"], funnel["clicked"]) == (4, 1, 1)


def _suppressed(ctx, address: str) -> list[str]:
    with Session(ctx.engine) as s:
        return list(s.scalars(select(Suppression.reason).where(Suppression.email_hash == email_hash(address))))


def test_a_group_resubscribe_lifts_the_unsubscribe_it_answers(ctx, webhook):
    address = "back-again@example.com"
    out = {"event": "group_unsubscribe", "email": address, "timestamp": 1790000000, "asm_group_id": 77,
           "sg_event_id": "g-out"}
    assert webhook.post([out]).json()["stored"] == 1
    assert _suppressed(ctx, address) == ["unsubscribed"]
    back = {"event": "group_resubscribe", "email": address, "timestamp": 1790000600, "asm_group_id": 77,
            "sg_event_id": "g-back"}
    assert webhook.post([back]).json()["stored"] == 1
    assert _suppressed(ctx, address) == []


def test_a_resubscribe_older_than_an_unsubscribe_in_one_batch_changes_nothing(ctx, webhook):
    address = "changed-mind@example.com"
    back = {"event": "group_resubscribe", "email": address, "timestamp": 1790000000, "asm_group_id": 77,
            "sg_event_id": "b-1"}
    out = {"event": "group_unsubscribe", "email": address, "timestamp": 1790000600, "asm_group_id": 77,
           "sg_event_id": "o-1"}
    assert webhook.post([out, back]).json()["stored"] == 2
    assert _suppressed(ctx, address) == ["unsubscribed"]


def test_a_resubscribe_never_lifts_a_bounce(ctx, webhook):
    address = "gone@example.com"
    webhook.post([{"event": "bounce", "type": "bounce", "email": address, "timestamp": 1790000000,
                   "reason": "550 no such user", "sg_event_id": "x-1"}])
    webhook.post([{"event": "group_resubscribe", "email": address, "timestamp": 1790000600,
                   "asm_group_id": 77, "sg_event_id": "x-2"}])
    assert _suppressed(ctx, address) == ["bounced"]

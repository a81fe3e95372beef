"""SendGrid event JSON → our DeliveryEvent (pure: no database, no HTTP)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

from postsale.delivery.webhook import EventType, InvalidWebhook, load_public_key, parse_events, verify_signature
from tests.delivery.webhook_kit import Signer

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("sendgrid, ours", [
    ({"event": "processed"}, EventType.processed), ({"event": "deferred"}, EventType.deferred),
    ({"event": "delivered"}, EventType.delivered), ({"event": "open"}, EventType.opened),
    ({"event": "click"}, EventType.clicked), ({"event": "bounce", "type": "bounce"}, EventType.bounced),
    ({"event": "bounce", "type": "blocked"}, EventType.blocked), ({"event": "dropped"}, EventType.dropped),
    ({"event": "spamreport"}, EventType.complained), ({"event": "unsubscribe"}, EventType.unsubscribed),
    ({"event": "group_unsubscribe"}, EventType.group_unsubscribed),
    ({"event": "group_resubscribe"}, EventType.group_resubscribed),
])
def test_every_sendgrid_type_maps_to_ours(sendgrid, ours):
    (event,) = parse_events(f'[{__import__("json").dumps({**sendgrid, "email": "a@b.co", "timestamp": 1})}]',
                            now=NOW).events
    assert event.type is ours


def test_fields_come_across_and_personal_data_stays_out_of_the_payload():
    body = ('[{"email": "Ada@Example.com", "timestamp": 1793610000, "event": "click", "sg_event_id": "ev1",'
            ' "sg_message_id": "XID123.filterdrecv-1", "postsale_message_id": "m-1", "url": "https://a.example/x",'
            ' "ip": "203.0.113.9", "useragent": "Mozilla", "asm_group_id": 77, "category": ["post-purchase"]}]')
    (event,) = parse_events(body, now=NOW).events
    assert event.key == "sg:ev1" and event.message_id == "m-1" and event.provider_message_id == "XID123"
    assert event.email == "Ada@Example.com" and event.url == "https://a.example/x" and event.group_id == 77
    assert event.occurred_at == datetime.fromtimestamp(1793610000, timezone.utc)
    assert not {"email", "ip", "useragent"} & set(event.payload) and event.payload["category"] == ["post-purchase"]


def test_events_without_an_id_are_keyed_by_content():
    a = parse_events('[{"event": "bounce", "email": "a@b.co", "timestamp": 5, "reason": "full"}]', now=NOW).events[0]
    b = parse_events('[{"reason": "full", "timestamp": 5, "email": "a@b.co", "event": "bounce"}]', now=NOW).events[0]
    c = parse_events('[{"event": "bounce", "email": "a@b.co", "timestamp": 6, "reason": "full"}]', now=NOW).events[0]
    assert a.key == b.key != c.key and a.key.startswith("h:")


def test_unknown_types_and_junk_are_counted_not_fatal():
    batch = parse_events('[{"event": "teleported"}, {"event": "teleported"}, 3, {"no": "event"}, {"event": "open"}]',
                         now=NOW)
    assert len(batch.events) == 1 and batch.unknown == {"teleported": 2} and batch.invalid == 2
    assert batch.events[0].occurred_at == NOW                  # no timestamp: dated now
    with pytest.raises(InvalidWebhook):
        parse_events('{"event": "open"}', now=NOW)
    with pytest.raises(InvalidWebhook):
        parse_events(b"\xff\xfe", now=NOW)


def test_signature_checks():
    signer = Signer.generate()
    key = load_public_key(signer.public_key)
    body, ts = b'[{"event":"open"}]', str(int(NOW.timestamp()))
    headers = signer.headers(body, ts)
    sig = headers["X-Twilio-Email-Event-Webhook-Signature"]
    verify_signature(key, body, sig, ts, now=NOW, max_age_seconds=600)
    pem = "-----BEGIN PUBLIC KEY-----\n" + signer.public_key + "\n-----END PUBLIC KEY-----\n"
    verify_signature(load_public_key(pem), body, sig, ts, now=NOW, max_age_seconds=600)
    for args in [(body + b" ", sig, ts), (body, sig, str(int(ts) + 1)), (body, None, ts), (body, sig, None),
                 (body, "!!!", ts), (body, base64.b64encode(b"short").decode(), ts), (body, sig, "nan"),
                 (b"\xff", sig, ts)]:
        with pytest.raises(InvalidWebhook):
            verify_signature(key, *args, now=NOW, max_age_seconds=600)
    with pytest.raises(InvalidWebhook):
        verify_signature(key, body, sig, ts, now=NOW.replace(minute=11), max_age_seconds=600)
    with pytest.raises(InvalidWebhook):
        load_public_key("not a key")

"""SendGridTransport: the real sendgrid client against the local fake, through the outbox."""

from __future__ import annotations

import socket
import time

import pytest

from postsale.delivery.outcomes import is_uncertain
from postsale.delivery.sendgrid import SendGridTransport, plan_requests
from postsale.store.delivery import deliver, outgoing
from tests.delivery.conftest import API_KEY, LIST_UNSUBSCRIBE, queue_messages, rows
from tests.fakes_sendgrid import FakeSendGrid, Reply, validate_mail_send


def test_a_message_goes_out_with_everything_sendgrid_needs(ctx, fake, sendgrid):
    (mid,) = queue_messages(ctx, 1)
    report = deliver(ctx, sendgrid)
    assert (report.sent, report.failed, report.retried) == (1, 0, 0)
    (request,) = fake.received
    assert request.problems == [] and request.status == 202
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    body = request.payload
    assert body["from"] == {"email": "hello@acme.example", "name": "Acme"}
    assert body["reply_to"] == {"email": "care@acme.example"}
    assert body["categories"] == ["post-purchase", "immediate_post_sale"]        # in our order
    assert body["asm"] == {"group_id": 77}                                         # marketing mail
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    (p,) = body["personalizations"]
    assert p["to"] == [{"email": "c-m0@example.com", "name": "Zoë 0"}]
    assert p["subject"] == "Grazie per l'ordine ☕"
    assert p["custom_args"]["postsale_message_id"] == mid
    assert p["custom_args"]["journey"] == "post-purchase" and p["custom_args"]["category"] == "marketing"
    assert p["headers"]["List-Unsubscribe"] == LIST_UNSUBSCRIBE
    assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert p["headers"]["X-Postsale-Message-Id"] == mid
    assert p["headers"]["Message-ID"] == f"<{mid}@acme.example>"
    assert "mail_settings" not in body
    row = rows(ctx)[mid]
    assert (row.status, row.provider_id, row.attempts) == ("sent", request.x_message_id, 1)


def test_transactional_mail_carries_no_unsubscribe_group(ctx, fake, sendgrid):
    queue_messages(ctx, 1, category="transactional")
    deliver(ctx, sendgrid)
    assert "asm" not in fake.received[0].payload


def test_sandbox_mode_answers_200_and_counts_as_sent(ctx, fake):
    queue_messages(ctx, 2)
    with SendGridTransport(API_KEY, host=fake.url, sandbox=True, timeout=1) as transport:
        report = deliver(ctx, transport)
    assert report.sent == 2
    assert {r.status for r in fake.received} == {200}
    assert all(r.payload["mail_settings"] == {"sandbox_mode": {"enable": True}} for r in fake.received)
    assert {m.status for m in rows(ctx).values()} == {"sent"}


def test_a_400_fails_the_message_with_sendgrid_text_and_is_never_retried(ctx, fake, sendgrid):
    (mid,) = queue_messages(ctx, 1)
    fake.queue(Reply(400, {"errors": [{"message": "The from address does not match a verified Sender Identity",
                                       "field": "from"}]}))
    report = deliver(ctx, sendgrid)
    assert (report.sent, report.failed) == (0, 1)
    row = rows(ctx)[mid]
    assert row.status == "failed"
    assert row.error == "SendGrid 400: The from address does not match a verified Sender Identity (field from)"
    ctx.clock.advance(days=1)
    assert deliver(ctx, sendgrid).sent == 0 and len(fake.received) == 1


def test_a_429_waits_for_the_rate_limit_reset_then_sends(ctx, fake, sendgrid):
    ids = queue_messages(ctx, 3)
    fake.queue(FakeSendGrid.rate_limited(reset_in=5))
    first = deliver(ctx, sendgrid)
    assert first.retried >= 1 and first.sent + first.retried == 3   # requests already in flight may finish
    waiting = [m for m in rows(ctx).values() if m.status == "queued"]
    assert waiting and all(m.error.startswith("SendGrid 429") or m.error.startswith("not attempted")
                           for m in waiting)
    for m in waiting:   # not before the reset SendGrid announced (epoch seconds, ~5 s away)
        delay = (m.next_attempt_at.replace(tzinfo=ctx.clock.now().tzinfo) - ctx.clock.now()).total_seconds()
        assert 4 <= delay <= 8
    assert deliver(ctx, sendgrid).sent == 0          # not yet due
    ctx.clock.advance(seconds=10)
    deliver(ctx, sendgrid)
    assert {m.status for m in rows(ctx).values()} == {"sent"}
    assert sorted(mid for mid, _ in fake.sent_to()) == sorted(ids)     # each exactly once


def test_a_429_stops_the_batch_instead_of_hammering(ctx, fake):
    queue_messages(ctx, 20)
    fake.queue(FakeSendGrid.rate_limited(reset_in=30))
    with SendGridTransport(API_KEY, host=fake.url, timeout=1, concurrency=1) as transport:
        report = deliver(ctx, transport)
    assert len(fake.received) == 1 and report.retried == 20
    assert all(m.error.startswith(("SendGrid 429", "not attempted: rate limited")) for m in rows(ctx).values())


def test_a_500_backs_off_with_jitter_and_then_sends(ctx, fake, sendgrid):
    (mid,) = queue_messages(ctx, 1)
    fake.queue(500)
    assert deliver(ctx, sendgrid).retried == 1
    row = rows(ctx)[mid]
    assert row.status == "queued" and row.error == "SendGrid 500: internal server error"
    delay = (row.next_attempt_at.replace(tzinfo=ctx.clock.now().tzinfo) - ctx.clock.now()).total_seconds()
    assert 24 <= delay <= 36                       # 30 s × 0.8-1.2
    ctx.clock.advance(seconds=40)
    assert deliver(ctx, sendgrid).sent == 1
    assert rows(ctx)[mid].status == "sent" and rows(ctx)[mid].attempts == 2


def test_a_hang_times_out_as_uncertain_and_waits_for_evidence(ctx, fake):
    (mid,) = queue_messages(ctx, 1)
    fake.queue("hang")
    with SendGridTransport(API_KEY, host=fake.url, timeout=0.5) as transport:
        started = time.monotonic()
        report = deliver(ctx, transport, reconcile_after=600)
        assert time.monotonic() - started < 5
        row = rows(ctx)[mid]
        assert report.retried == 1 and row.status == "queued" and row.reconcile == "uncertain"
        assert "timed out after 0.5s" in row.error
        ctx.clock.advance(seconds=300)
        assert deliver(ctx, transport, reconcile_after=600).sent == 0     # still waiting for evidence
        ctx.clock.advance(seconds=301)
        report = deliver(ctx, transport, reconcile_after=600)
    row = rows(ctx)[mid]
    assert report.sent == 1 and report.resent == 1
    assert (row.status, row.reconcile) == ("sent", "resent") and "resent without provider evidence" in row.error


def test_a_refused_connection_is_transient(ctx):
    (mid,) = queue_messages(ctx, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]            # nothing listens here once closed
    for keep_alive in (True, False):
        with SendGridTransport(API_KEY, host=f"http://127.0.0.1:{port}", timeout=1, keep_alive=keep_alive) as t:
            (result,) = t.send([outgoing(rows(ctx)[mid])])
        assert result.transient and not is_uncertain(result) and "unreachable" in result.error


@pytest.mark.parametrize("keep_alive", [True, False])
def test_the_stock_and_keep_alive_clients_map_errors_alike(ctx, fake, keep_alive):
    ids = queue_messages(ctx, 4)
    fake.queue(400, 429, 503, "hang")
    with SendGridTransport(API_KEY, host=fake.url, timeout=0.5, concurrency=1, keep_alive=keep_alive) as t:
        batch = [outgoing(rows(ctx)[i]) for i in ids]
        results = [t.send([email])[0] for email in batch]
    assert [(r.ok, r.transient, is_uncertain(r)) for r in results] == [
        (False, False, False), (False, True, False), (False, True, False), (False, True, True)]
    assert results[0].error == "SendGrid 400: Bad Request"


def test_a_wrong_api_key_delays_mail_instead_of_failing_it(ctx, fake):
    queue_messages(ctx, 5)
    with SendGridTransport("SG.wrong", host=fake.url, timeout=1, concurrency=1) as transport:
        report = deliver(ctx, transport)
    assert report.failed == 0 and report.retried == 5 and len(fake.received) == 1
    assert {m.status for m in rows(ctx).values()} == {"queued"}


def test_connections_are_reused_across_requests(ctx, fake):
    queue_messages(ctx, 40)
    with SendGridTransport(API_KEY, host=fake.url, timeout=1, concurrency=4) as transport:
        assert deliver(ctx, transport, batch_size=10).sent == 40
    assert len(fake.received) == 40 and fake.connections <= 4
    assert fake.problems() == []


# ---------------------------------------------------------------- identical content: personalizations

def test_identical_content_shares_a_request_in_order(ctx, fake, sendgrid):
    ids = queue_messages(ctx, 7, identical=True)
    assert deliver(ctx, sendgrid).sent == 7
    (request,) = fake.received
    assert request.problems == []
    order = [p["custom_args"]["postsale_message_id"] for p in request.payload["personalizations"]]
    assert order == ids                            # add_personalization's insert-at-0 undone
    assert [p["to"][0]["email"] for p in request.payload["personalizations"]] == [f"c-m{i}@example.com" for i in range(7)]
    assert {m.provider_id for m in rows(ctx).values()} == {request.x_message_id}


def test_shared_requests_never_repeat_an_address_and_stay_within_the_limit(ctx, fake):
    queue_messages(ctx, 9, identical=True, to=lambda i: "same@example.com" if i < 3 else f"x{i}@example.com")
    with SendGridTransport(API_KEY, host=fake.url, timeout=1, max_personalizations=4) as transport:
        assert deliver(ctx, transport).sent == 9
    assert fake.problems() == []
    for request in fake.received:
        addresses = [p["to"][0]["email"] for p in request.payload["personalizations"]]
        assert len(addresses) <= 4 and len(set(addresses)) == len(addresses)
    assert sorted(mid for mid, _ in fake.sent_to()) == sorted(rows(ctx))


def test_plan_keeps_different_content_apart():
    batch = _emails(["a", "a", "b", "a"])
    plan = plan_requests(batch)
    assert [[e.message_id for e in g] for g in plan] == [["e0", "e1", "e3"], ["e2"]]
    assert [[e.message_id for e in g] for g in plan_requests(batch, 1)] == [["e0"], ["e1"], ["e2"], ["e3"]]


def test_one_bad_address_in_a_shared_request_fails_alone(ctx, fake, sendgrid):
    queue_messages(ctx, 4, identical=True, to=lambda i: "not-an-address@" if i == 2 else f"ok{i}@example.com")
    report = deliver(ctx, sendgrid)
    assert (report.sent, report.failed) == (3, 1)
    failed = [m for m in rows(ctx).values() if m.status == "failed"]
    assert len(failed) == 1 and "Does not contain a valid address" in failed[0].error
    assert sorted(e for _, e in fake.sent_to()) == ["ok0@example.com", "ok1@example.com", "ok3@example.com"]


def test_header_injection_is_refused_before_the_provider_sees_it(ctx, fake, sendgrid):
    (mid,) = queue_messages(ctx, 1)
    from sqlmodel import Session
    from models import Message
    with Session(ctx.engine) as s:
        s.get(Message, mid).subject = "hi\r\nBcc: victim@example.com"
        s.commit()
    assert deliver(ctx, sendgrid).failed == 1
    assert fake.received == [] and "header injection" in rows(ctx)[mid].error


def test_the_fake_checks_what_sendgrid_documents():
    good = {"from": {"email": "a@b.co"}, "subject": "s", "content": [{"type": "text/plain", "value": "x"}],
            "personalizations": [{"to": [{"email": "c@d.co"}]}]}
    assert validate_mail_send(good) == []
    assert validate_mail_send({**good, "categories": [str(i) for i in range(11)]})
    assert validate_mail_send({**good, "personalizations": [{"to": [{"email": "c@d.co"}]}] * 2})
    assert validate_mail_send({**good, "personalizations": [{"to": [{"email": f"{i}@d.co"}]} for i in range(1001)]})
    assert validate_mail_send({**good, "content": [{"type": "text/html", "value": "x"},
                                                   {"type": "text/plain", "value": "x"}]})
    assert validate_mail_send({**good, "personalizations": [{"to": [{"email": "c@d.co"}],
                                                             "headers": {"Subject": "x"}}]})
    assert validate_mail_send({**good, "send_at": int(time.time()) + 73 * 3600})
    assert validate_mail_send({k: v for k, v in good.items() if k != "subject"})


def _emails(contents: list[str]):
    from datetime import datetime, timezone
    from postsale.delivery.base import OutgoingEmail
    return [OutgoingEmail(message_id=f"e{i}", to_email=f"e{i}@example.com", to_name=None, from_="a@acme.example",
                          reply_to=None, subject="s", html=c, text=c, headers={},
                          date=datetime(2026, 1, 1, tzinfo=timezone.utc)) for i, c in enumerate(contents)]

"""Hostile HTTP against the real app on loopback uvicorn (issue 9): oversized bodies on every
endpoint that takes one, forged and replayed webhooks from all three senders (Shopify HMAC,
Stripe-Signature, SendGrid's ECDSA), signed garbage, hostile forms, and signed links used
across customers or after the customer was forgotten.

What must hold: a refusal is a 4xx (never a 5xx, never a hang), and a refused or replayed
request changes nothing (the rows it could have written are counted before and after).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import tracemalloc
from typing import Any, Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import Session

from models import DeliveryEvent, Message, Suppression, SurveyResponse
from models import Event as EventRow
from postsale.api.app import create_app
from postsale.clock import VirtualClock
from postsale.delivery.memory import MemoryTransport
from postsale.serve import Dispatcher
from postsale.settings import DEV_SECRET, load_settings
from postsale.store.context import Context
from postsale.store.sql import email_hash
from tests.api.conftest import (FIXTURE, MAX_BODY, SHOPIFY_SECRET, STRIPE_SECRET, T0, TOKEN, Live, event, order,
                                start_server, survey_path, unsubscribe_path)
from tests.delivery.webhook_kit import Signer

LONG = os.environ.get("POSTSALE_LONG") == "1"
PROPERTY = settings(max_examples=300 if LONG else 60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SIGNER = Signer.generate()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """tests/api's live server, with the SendGrid webhook's public key configured too."""
    folder = tmp_path_factory.mktemp("hostile-http")
    config = load_settings(database_url=f"sqlite:///{folder}/api.db", journeys=FIXTURE / "journeys",
                           templates=FIXTURE / "templates", transport="memory", outbox=folder / "outbox",
                           secret=DEV_SECRET, api_token=TOKEN, shopify_secret=SHOPIFY_SECRET,
                           stripe_secret=STRIPE_SECRET, sendgrid_webhook_public_key=SIGNER.public_key)
    clock = VirtualClock(T0)
    ctx = Context.from_settings(config, clock=clock)
    transport = MemoryTransport()
    dispatcher = Dispatcher(ctx, transport, interval_seconds=3600)
    dispatcher.start(schedule=False)
    app = create_app(config, ctx=ctx, dispatcher=dispatcher, max_body_bytes=MAX_BODY, emit_prefect=False)
    server, thread, url = start_server(app)
    with httpx.Client(base_url=url, timeout=20) as client:
        yield Live(url, ctx, clock, transport, dispatcher, app.state.services, client)
    server.should_exit = True
    thread.join(15)
    dispatcher.stop()
    ctx.engine.dispose()


def counts(live: Live) -> dict[str, int]:
    """Every row a refused request could have written."""
    with Session(live.ctx.engine) as session:
        return {table.__name__: session.scalar(select(func.count()).select_from(table))
                for table in (EventRow, DeliveryEvent, Suppression, SurveyResponse, Message)}


# ------------------------------------------------------------------ signed requests, as each sender signs

def shopify(body: bytes, *, secret: str = SHOPIFY_SECRET) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": digest}


def stripe(body: bytes, at: int, *, secret: str = STRIPE_SECRET) -> dict[str, str]:
    signature = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={at},v1={signature}"}


def sendgrid(body: bytes, at: int) -> dict[str, str]:
    return SIGNER.headers(body, at)


def shopify_order(n: int) -> bytes:
    return json.dumps({"id": 820982911946154500 + n, "email": f"shop{n}@example.com", "created_at": T0.isoformat(),
                       "currency": "EUR", "total_price": "12.00", "financial_status": "paid",
                       "customer": {"id": 115310627314723950 + n, "first_name": "Jo", "last_name": "Shop"},
                       "line_items": [{"id": 1, "sku": "MUG-1", "title": "Mug", "quantity": 1, "price": "12.00"}]
                       }).encode()


def stripe_event(n: int, at: int) -> bytes:
    return json.dumps({"id": f"evt_{n}", "object": "event", "type": "checkout.session.completed", "created": at,
                       "data": {"object": {"id": f"cs_test_{n}", "object": "checkout.session", "amount_total": 1200,
                                           "currency": "eur", "payment_status": "paid", "status": "complete",
                                           "customer_details": {"email": f"stripe{n}@example.com", "name": "Jo"}}}
                       }).encode()


def sendgrid_events(n: int, at: int) -> bytes:
    return json.dumps([{"email": f"sg{n}@example.com", "event": "bounce", "timestamp": at, "type": "bounce",
                        "sg_event_id": f"sg-ev-{n}", "sg_message_id": f"sg{n}.filter", "reason": "550 no such user",
                        "postsale_message_id": f"unknown-{n}"}]).encode()


Sender = tuple[str, Callable[[int, int], bytes], Callable[[bytes, int], dict[str, str]]]
SENDERS: dict[str, Sender] = {
    "shopify": ("/webhooks/shopify", lambda n, at: shopify_order(n), lambda body, at: shopify(body)),
    "stripe": ("/webhooks/stripe", stripe_event, stripe),
    "sendgrid": ("/webhooks/sendgrid", sendgrid_events, sendgrid),
}


def now(live: Live) -> int:
    return int(live.clock.now().timestamp())


# ------------------------------------------------------------------ replays

@pytest.mark.parametrize("sender", SENDERS)
def test_a_replayed_webhook_is_taken_once(live: Live, sender):
    path, make, sign = SENDERS[sender]
    body = make(1, now(live))
    headers = sign(body, now(live))
    first = live.client.post(path, content=body, headers=headers)
    live.settle()
    assert first.status_code == 200, first.text
    after_first = counts(live)
    assert after_first["Event"] + after_first["DeliveryEvent"] > 0
    for _ in range(3):
        again = live.client.post(path, content=body, headers=headers)
        live.settle()
        assert again.status_code == 200, again.text
    assert counts(live) == after_first


@pytest.mark.parametrize("sender", ["stripe", "sendgrid"])
def test_a_webhook_replayed_after_its_window_is_refused(live: Live, sender):
    path, make, sign = SENDERS[sender]
    old = now(live) - 3600
    body = make(2, old)
    before = counts(live)
    response = live.client.post(path, content=body, headers=sign(body, old))
    assert 400 <= response.status_code < 500, response.text
    assert counts(live) == before


# ------------------------------------------------------------------ forgeries

HEADER = {"shopify": "X-Shopify-Hmac-Sha256", "stripe": "Stripe-Signature", "sendgrid": "X-Twilio-Email-Event-Webhook-Signature"}
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=200).map(lambda v: v.strip(" \t"))     # what HTTP allows as a value


@PROPERTY
@given(sender=st.sampled_from(list(SENDERS)), forged=header_text)
def test_a_forged_signature_header_is_refused_and_changes_nothing(live: Live, sender, forged):
    path, make, sign = SENDERS[sender]
    body = make(3, now(live))
    headers = {**sign(body, now(live)), HEADER[sender]: forged.encode("latin-1")}
    before = counts(live)
    response = live.client.post(path, content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert counts(live) == before


@PROPERTY
@given(sender=st.sampled_from(list(SENDERS)), data=st.data())
def test_a_body_changed_after_signing_is_refused(live: Live, sender, data):
    path, make, sign = SENDERS[sender]
    body = make(4, now(live))
    headers = sign(body, now(live))
    at = data.draw(st.integers(0, len(body) - 1), label="byte")
    flipped = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255), label="xor")]) + body[at + 1:]
    tail = data.draw(st.binary(max_size=8), label="appended")
    before = counts(live)
    response = live.client.post(path, content=flipped + tail, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert counts(live) == before


@pytest.mark.parametrize("sender", ["stripe", "sendgrid"])
@pytest.mark.parametrize("shift", [-1, 1, 86400])
def test_a_timestamp_changed_after_signing_is_refused(live: Live, sender, shift):
    path, make, sign = SENDERS[sender]
    body = make(5, now(live))
    headers = sign(body, now(live))
    key = "Stripe-Signature" if sender == "stripe" else "X-Twilio-Email-Event-Webhook-Timestamp"
    if sender == "stripe":
        headers[key] = re.sub(r"t=(\d+)", lambda m: f"t={int(m.group(1)) + shift}", headers[key])
    else:
        headers[key] = str(int(headers[key]) + shift)
    before = counts(live)
    response = live.client.post(path, content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert counts(live) == before


@pytest.mark.parametrize("sender", ["shopify", "stripe"])
def test_a_signature_made_with_another_secret_is_refused(live: Live, sender):
    path, make, _ = SENDERS[sender]
    body = make(6, now(live))
    headers = shopify(body, secret="shpss_attacker") if sender == "shopify" else stripe(body, now(live), secret="whsec_x")
    before = counts(live)
    response = live.client.post(path, content=body, headers=headers)
    assert 400 <= response.status_code < 500 and counts(live) == before


def test_a_sendgrid_batch_signed_by_another_key_is_refused(live: Live):
    body = sendgrid_events(7, now(live))
    before = counts(live)
    response = live.client.post("/webhooks/sendgrid", content=body, headers=Signer.generate().headers(body, now(live)))
    assert response.status_code == 403 and counts(live) == before


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
                           max_leaves=25)


@PROPERTY
@given(sender=st.sampled_from(list(SENDERS)), payload=json_values | st.binary(max_size=200))
def test_signed_garbage_is_a_clean_answer_never_a_server_error(live: Live, sender, payload):
    """A compromised or buggy sender holds the secret: what it signs must still not crash us."""
    path, _, sign = SENDERS[sender]
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = live.client.post(path, content=body, headers=sign(body, now(live)))
    assert response.status_code < 500, (response.status_code, response.text)


# ------------------------------------------------------------------ oversized bodies

def _mail(live: Live, cid: str) -> Any:
    live.post_events(order(f"{cid}-order", cid, at=live.clock.now()))
    live.settle()
    return next(m for m in live.mail_to(f"{cid}@example.com") if "List-Unsubscribe" in m.headers)


def _survey(live: Live, cid: str) -> Any:
    live.post_events(event(f"{cid}-delivered", "order.delivered", cid, at=live.clock.now(), order_id=f"{cid}-1"))
    live.settle()
    return next(m for m in live.mail_to(f"{cid}@example.com") if m.subject == "How did we do?")


@pytest.fixture(scope="module")
def endpoints(live: Live) -> dict[str, tuple[str, dict[str, str]]]:
    unsubscribe = unsubscribe_path(_mail(live, "c-big"))
    survey = survey_path(_survey(live, "c-big-survey"), 4).split("?")[0]
    return {"events": ("/events", {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}),
            "shopify": ("/webhooks/shopify", {"X-Shopify-Topic": "orders/create"}),
            "stripe": ("/webhooks/stripe", {}), "sendgrid": ("/webhooks/sendgrid", {}),
            "unsubscribe": (unsubscribe, {"Content-Type": "application/x-www-form-urlencoded"}),
            "preferences": (unsubscribe + "/preferences", {"Content-Type": "application/x-www-form-urlencoded"}),
            "survey": (survey, {"Content-Type": "application/x-www-form-urlencoded"})}


@pytest.mark.parametrize("name", ["events", "shopify", "stripe", "sendgrid", "unsubscribe", "preferences", "survey"])
@pytest.mark.parametrize("framing", ["declared", "chunked"])
def test_every_endpoint_refuses_an_oversized_body_without_holding_it(live: Live, endpoints, name, framing):
    """413, nothing written, and (chunked: no length to refuse by) the app never holds more than
    the limit: Python's allocation peak while 16 MiB stream in stays far below it (tracemalloc
    sees the in-process server and this client; uvicorn reads and drops the rest)."""
    path, headers = endpoints[name]
    before = counts(live)

    def chunks() -> Iterator[bytes]:
        for _ in range(2048):              # 16 MiB, 256 times the limit, 8 KiB at a time
            yield b"List-Unsubscribe=One-Click&" + b"x" * 8165

    body: Any = b"List-Unsubscribe=One-Click&" + b"x" * (4 * MAX_BODY) if framing == "declared" else chunks()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            status = live.client.post(path, content=body, headers=headers).status_code
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            status = None                  # the server answered 413 and closed while we still wrote
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status in (413, None), status
    assert framing == "declared" or peak < 2 * 1024 * 1024, f"{peak} bytes allocated at the peak"
    assert counts(live) == before
    assert live.client.get("/healthz").status_code == 200


@PROPERTY
@given(content_type=st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data; boundary=xx",
                                     "multipart/form-data", "multipart/form-data; boundary=", "text/plain",
                                     "multipart/mixed; boundary=a", "application/json"]),
       body=st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_hostile_forms_on_the_link_pages_are_answered_cleanly(live: Live, endpoints, content_type, body):
    for name in ("unsubscribe", "preferences", "survey"):
        path, _ = endpoints[name]
        response = live.client.post(path, content=body, headers={"Content-Type": content_type})
        assert response.status_code < 500, (name, response.status_code, response.text[:300])


def test_a_huge_header_is_refused_and_the_server_lives_on(live: Live):
    try:
        status = live.client.get("/healthz", headers={"X-Junk": "x" * 2_000_000}).status_code
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        status = None
    assert status in (400, 431, None)
    assert live.client.get("/healthz").status_code == 200


# ------------------------------------------------------------------ tokens across customers

def test_links_act_only_for_their_own_customer_and_message(live: Live):
    people = ["c-ann", "c-bob", "c-cy"]
    mails = {cid: _mail(live, cid) for cid in people}
    surveys = {cid: _survey(live, cid) for cid in people}
    links = live.ctx.links
    claims = {cid: links.read(unsubscribe_path(m).removeprefix("/u/"), "unsubscribe") for cid, m in mails.items()}
    survey_claims = {cid: links.read(survey_path(m, 4).split("/s/")[1].split("?")[0], "survey")
                     for cid, m in surveys.items()}
    before = counts(live)

    # Validly signed, but binding one customer to another's message: what a leaked secret-less
    # attacker cannot make, and what our own bug (a mixed-up batch) could. Refused, no change.
    for owner in people:
        for other in people:
            if owner == other:
                continue
            swapped = links.token("unsubscribe", claims[other].customer_id, claims[owner].message_id)
            crossed = links.token("survey", survey_claims[other].customer_id, survey_claims[owner].message_id, "csat")
            for method, url in (("POST", f"/u/{swapped}"), ("POST", f"/u/{swapped}/preferences"),
                                ("GET", f"/s/{crossed}?a=1"), ("POST", f"/s/{crossed}")):
                response = live.client.request(method, url, data={"List-Unsubscribe": "One-Click",
                                                                   "marketing": "no", "q-score": "1"})
                assert response.status_code == 404, (owner, other, method, url, response.status_code)
    assert counts(live) == before

    # Bob uses his own links: only Bob changes.
    assert live.client.post(unsubscribe_path(mails["c-bob"]), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert live.client.get(survey_path(surveys["c-bob"], 2)).status_code == 200
    with Session(live.ctx.engine) as session:
        suppressed = set(session.scalars(select(Suppression.email_hash)))
        answered = set(session.scalars(select(SurveyResponse.customer_id)))
    assert email_hash("c-bob@example.com") in suppressed
    assert not {email_hash(f"{c}@example.com") for c in ("c-ann", "c-cy")} & suppressed
    assert answered & set(people) == {"c-bob"}


def test_a_forgotten_customers_links_change_nothing_and_recreate_nothing(live: Live):
    mail = _mail(live, "c-gone")
    survey = _survey(live, "c-gone")
    response = live.client.delete("/customers", params={"email": "c-gone@example.com"},
                                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    before = counts(live)
    for method, url in (("GET", unsubscribe_path(mail)), ("POST", unsubscribe_path(mail)),
                        ("POST", unsubscribe_path(mail) + "/preferences"), ("GET", survey_path(survey, 5)),
                        ("POST", survey_path(survey, 5).split("?")[0])):
        response = live.client.request(method, url, data={"List-Unsubscribe": "One-Click", "marketing": "yes",
                                                          "q-score": "5"})
        assert response.status_code in (404, 410), (method, url, response.status_code)
    assert counts(live) == before
    with Session(live.ctx.engine) as session:
        assert not list(session.scalars(select(SurveyResponse).where(SurveyResponse.customer_id == "c-gone")))
        kept = list(session.scalars(select(Message).where(Message.customer_id == "c-gone")))
        assert kept and all((m.to_email, m.to_name, m.html, m.subject) == (None, None, None, "[erased]")
                            for m in kept)   # the log stays for caps and reports, scrubbed
        assert session.scalar(select(func.count()).select_from(Suppression)
                              .where(Suppression.email_hash == email_hash("c-gone@example.com"))) == 1

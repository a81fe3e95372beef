"""Shopify and Stripe webhooks: signatures, mapping of real payloads, dedupe on replays.

The payloads under ``fixture/payloads`` follow the example payloads of Shopify's webhook
reference (orders/create, fulfillments/create, refunds/create: same ids, fields and nesting;
the order marked paid and the refund given its transaction, which the reference leaves empty)
and Stripe's Checkout Session object inside an ``Event``. The tests move their timestamps to
the test's clock, as a live delivery would carry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from models import Event as EventRow
from models import Run
from tests.api.conftest import SHOPIFY_SECRET, STRIPE_SECRET, Live

PAYLOADS = Path(__file__).parent / "fixture" / "payloads"
EST = timezone(timedelta(hours=-5))


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def stored(live: Live, event_id: str) -> EventRow | None:
    with Session(live.ctx.engine) as session:
        return session.get(EventRow, event_id)


# ---------------------------------------------------------------- Shopify

def shopify(live: Live, topic: str, body: dict[str, Any] | bytes, *, secret: str = SHOPIFY_SECRET,
            signature: str | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    digest = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": topic,
               "X-Shopify-Hmac-Sha256": digest if signature is None else signature,
               "X-Shopify-Shop-Domain": "jsmith.myshopify.com", "X-Shopify-API-Version": "2024-07",
               "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"}
    return live.client.post("/webhooks/shopify", content=raw, headers=headers)


def shopify_now(live: Live, name: str) -> dict[str, Any]:
    body = payload(name)
    stamp = live.clock.now().astimezone(EST).isoformat()
    for key in ("created_at", "updated_at", "processed_at"):
        if key in body:
            body[key] = stamp
    return body


def test_shopify_order_fulfillment_and_refund_become_postsale_events(live: Live):
    order = shopify_now(live, "shopify-orders-create.json")

    placed = shopify(live, "orders/create", order)
    live.settle()

    assert placed.status_code == 200 and placed.json()["accepted"] == 1
    event = stored(live, "shopify-order-820982911946154508")
    assert event.type == "order.placed" and event.customer_id == "shopify-115310627314723954"
    assert event.customer_snapshot["email"] == "jon@example.com"          # the order's address
    assert event.customer_snapshot["name"] == "John Smith"
    assert event.data["order_id"] == "1234" and event.data["total"] == 403.0 and event.data["currency"] == "USD"
    assert [i["sku"] for i in event.data["items"]] == ["IPOD2008PINK", "IPOD2008BLACK"]
    assert live.subjects("jon@example.com") == ["Thanks for your order, John Smith"]

    shipped = shopify(live, "fulfillments/create", shopify_now(live, "shopify-fulfillments-create.json"))
    live.settle()

    assert shipped.status_code == 200 and shipped.json()["accepted"] == 1
    event = stored(live, "shopify-fulfillment-123456")
    assert event.type == "order.shipped" and event.customer_id == "shopify-115310627314723954"
    assert event.data["tracking_number"] == "1z827wk74630" and event.data["order_id"] == "1234"
    assert live.subjects("jon@example.com")[-1] == "Order 1234 is on its way"

    refunded = shopify(live, "refunds/create", shopify_now(live, "shopify-refunds-create.json"))
    live.settle()

    assert refunded.status_code == 200 and refunded.json()["accepted"] == 1
    event = stored(live, "shopify-refund-890088186047892319")
    assert event.type == "order.refunded" and event.data["amount"] == 199.0 and event.data["full"] is False
    with Session(live.ctx.engine) as session:
        run = session.exec(select(Run).where(Run.customer_id == "shopify-115310627314723954",
                                             Run.journey_id == "post-purchase")).one()
    assert run.status == "exited" and run.exit_reason == "exit_when order.refunded"


def test_shopify_replays_are_duplicates(live: Live):
    order = shopify_now(live, "shopify-orders-create.json")
    order["id"], order["order_number"] = 450789469, 1001
    order["customer"]["id"] = 207119551

    first = shopify(live, "orders/create", order)
    replay = shopify(live, "orders/create", order)
    live.settle()

    assert first.json()["accepted"] == 1
    assert replay.status_code == 200 and replay.json()["accepted"] == 0 and replay.json()["duplicate"] == 1


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSByaWdodCBzaWduYXR1cmU=", "sig-of-another-secret"],
                         ids=["missing", "wrong", "other-secret"])
def test_shopify_bad_signatures_are_401_and_nothing_is_stored(live: Live, signature: str):
    order = shopify_now(live, "shopify-orders-create.json")
    order["id"] = 999000111
    if signature == "sig-of-another-secret":
        response = shopify(live, "orders/create", order, secret="another-shop")
    else:
        response = shopify(live, "orders/create", order, signature=signature)

    assert response.status_code == 401
    assert stored(live, "shopify-order-999000111") is None


def test_shopify_signature_covers_every_byte(live: Live):
    order = shopify_now(live, "shopify-orders-create.json")
    order["id"] = 999000222
    raw = json.dumps(order).encode()
    digest = base64.b64encode(hmac.new(SHOPIFY_SECRET.encode(), raw, hashlib.sha256).digest()).decode()

    response = shopify(live, "orders/create", raw.replace(b'"403.00"', b'"0.01"'), signature=digest)

    assert response.status_code == 401
    assert stored(live, "shopify-order-999000222") is None


def test_shopify_unmapped_topics_and_unknown_orders_are_acknowledged_and_ignored(live: Live):
    updated = shopify(live, "orders/updated", shopify_now(live, "shopify-orders-create.json"))
    fulfillment = shopify_now(live, "shopify-fulfillments-create.json")
    fulfillment["id"], fulfillment["order_id"] = 777, 123123123

    orphan = shopify(live, "fulfillments/create", fulfillment)

    assert updated.status_code == 200 and "not mapped" in updated.json()["ignored"]
    assert orphan.status_code == 200 and "unknown order shopify-order-123123123" in orphan.json()["ignored"]
    assert stored(live, "shopify-fulfillment-777") is None


def test_shopify_without_a_secret_is_503(live: Live):
    configured = live.services.settings
    live.services.settings = configured.model_copy(update={"shopify_secret": None})
    try:
        response = shopify(live, "orders/create", shopify_now(live, "shopify-orders-create.json"))
    finally:
        live.services.settings = configured
    assert response.status_code == 503 and "POSTSALE_SHOPIFY_SECRET" in response.json()["detail"]


# ---------------------------------------------------------------- Stripe

def stripe(live: Live, body: dict[str, Any] | bytes, *, at: int | None = None, secret: str = STRIPE_SECRET,
           header: str | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = int(live.clock.now().timestamp()) if at is None else at
    signature = hmac.new(secret.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json; charset=utf-8",
               "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
               "Stripe-Signature": header if header is not None else f"t={stamp},v1={signature},v0=deadbeef"}
    return live.client.post("/webhooks/stripe", content=raw, headers=headers)


def checkout(live: Live, session_id: str, **session: Any) -> dict[str, Any]:
    body = payload("stripe-checkout-session-completed.json")
    body["created"] = int(live.clock.now().timestamp())
    body["data"]["object"].update(id=session_id, **session)
    return body


def test_a_paid_stripe_checkout_is_an_order(live: Live):
    body = checkout(live, "cs_test_paid_1")

    response = stripe(live, body)
    live.settle()

    assert response.status_code == 200 and response.json()["accepted"] == 1
    event = stored(live, "stripe-checkout-cs_test_paid_1")
    assert event.type == "order.placed"
    assert event.customer_id.startswith("stripe-guest-")
    assert event.customer_snapshot["email"] == "jenny.rosen@example.com"
    assert event.data["total"] == 21.98 and event.data["currency"] == "USD"
    assert event.occurred_at.replace(tzinfo=timezone.utc) == live.clock.now().replace(microsecond=0)
    assert live.subjects("jenny.rosen@example.com") == ["Thanks for your order, Jenny Rosen"]

    replay = stripe(live, body)                      # the same delivery again, within tolerance
    assert replay.status_code == 200 and replay.json()["duplicate"] == 1


def test_stripe_signatures_bad_expired_or_missing_are_400_and_nothing_is_stored(live: Live):
    now = int(live.clock.now().timestamp())
    body = checkout(live, "cs_test_refused")

    responses = {
        "wrong secret": stripe(live, body, secret="whsec_another"),
        "old (replayed 6 minutes later)": stripe(live, body, at=now - 360),
        "from the future": stripe(live, body, at=now + 360),
        "no header": stripe(live, body, header=""),
        "no v1": stripe(live, body, header=f"t={now},v0=abc"),
        "no timestamp": stripe(live, body, header="v1=abc"),
    }

    assert {k: r.status_code for k, r in responses.items()} == {k: 400 for k in responses}
    assert "more than 300s" in responses["old (replayed 6 minutes later)"].json()["detail"]
    assert stored(live, "stripe-checkout-cs_test_refused") is None


def test_stripe_async_payments_count_when_they_succeed(live: Live):
    pending = checkout(live, "cs_test_async", payment_status="unpaid", customer="cus_NffrFeUfNV2Hib",
                       currency="jpy", amount_total=5000, locale="it")
    succeeded = json.loads(json.dumps(pending))
    succeeded["type"] = "checkout.session.async_payment_succeeded"
    succeeded["data"]["object"]["payment_status"] = "paid"

    first = stripe(live, pending)
    second = stripe(live, succeeded)
    live.settle()

    assert first.status_code == 200 and "not paid yet" in first.json()["ignored"]
    assert second.status_code == 200 and second.json()["accepted"] == 1
    event = stored(live, "stripe-checkout-cs_test_async")
    assert event.customer_id == "stripe-cus_NffrFeUfNV2Hib"
    assert event.data["total"] == 5000 and event.data["currency"] == "JPY"     # yen have no minor unit
    assert event.customer_snapshot["locale"] == "it"


def test_stripe_unmapped_types_are_acknowledged(live: Live):
    body = checkout(live, "cs_test_expired")
    body["type"] = "checkout.session.expired"

    response = stripe(live, body)

    assert response.status_code == 200 and "not mapped" in response.json()["ignored"]

"""Shop webhooks → postsale events: Shopify orders, fulfillments and refunds; Stripe Checkout.

Provider payloads stop here (STYLE.md §6): each is verified, mapped to one SPEC.md §2 event and
handed to the same accept path as ``POST /events``. Event ids derive from the shop's own ids
(``shopify-order-<id>``, ``stripe-checkout-<session id>``), so a retried or replayed delivery
is a duplicate, not a second order.

- Shopify: ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw body with
  ``POSTSALE_SHOPIFY_SECRET``; by ``X-Shopify-Topic``, ``orders/create`` → order.placed,
  ``fulfillments/create`` → order.shipped, ``refunds/create`` → order.refunded.
- Stripe: ``Stripe-Signature: t=…,v1=…``, any ``v1`` the hex HMAC-SHA256 of ``t.body`` with
  ``POSTSALE_STRIPE_SECRET`` and ``t`` within 5 minutes of now; ``checkout.session.completed``
  (once paid) and ``checkout.session.async_payment_succeeded`` → order.placed.

Fulfillments and refunds carry no customer: they are joined to the order event stored before
(an unknown order is acknowledged and ignored, with the reason, so that the shop does not
retry it for days). Unmapped topics and types are acknowledged with 200 and ignored. Customers
are ``shopify-<customer id>`` / ``stripe-<cus_…>``, or ``…-guest-<hash of the address>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from datetime import datetime, timezone
from typing import Any, Callable

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from models import Customer as CustomerRow
from models import Event as EventRow
from postsale.api.deps import Services, accept_items, emit_to_prefect, read_body, services

log = logging.getLogger("postsale.api.shops")
router = APIRouter(tags=["shops"])

STRIPE_TOLERANCE_SECONDS = 300
# Stripe amounts are in the currency's smallest unit; these have no minor unit.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
_LOCALE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


class Ignored(Exception):
    """A verified delivery that maps to no event (acknowledged with 200 and the reason)."""


# ---------------------------------------------------------------- routes

@router.post("/webhooks/shopify")
async def shopify_webhook(request: Request) -> JSONResponse:
    svc = services(request)
    secret = svc.settings.shopify_secret
    if not secret:
        raise HTTPException(503, "Shopify webhooks are not configured: set POSTSALE_SHOPIFY_SECRET to the "
                                 "app's client secret (or the shop's webhook signing secret)")
    body = await read_body(request, svc.max_body_bytes)
    given = request.headers.get("x-shopify-hmac-sha256", "")
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    if not given or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise HTTPException(401, "X-Shopify-Hmac-Sha256 does not match the body")
    topic = request.headers.get("x-shopify-topic", "")
    mapper = SHOPIFY_TOPICS.get(topic)
    if mapper is None:
        return JSONResponse({"ignored": f"topic {topic or '(none)'!r} is not mapped to a postsale event"})
    return await _accept(svc, _json(body), mapper)


@router.post("/webhooks/stripe")
async def stripe_webhook(request: Request) -> JSONResponse:
    svc = services(request)
    secret = svc.settings.stripe_secret
    if not secret:
        raise HTTPException(503, "Stripe webhooks are not configured: set POSTSALE_STRIPE_SECRET to the "
                                 "endpoint's signing secret (whsec_...)")
    body = await read_body(request, svc.max_body_bytes)
    verify_stripe(body, request.headers.get("stripe-signature", ""), secret, svc.ctx.clock.now())
    payload = _json(body)
    mapper = STRIPE_TYPES.get(str(payload.get("type")))
    if mapper is None:
        return JSONResponse({"ignored": f"type {payload.get('type')!r} is not mapped to a postsale event"})
    return await _accept(svc, payload, mapper)


def verify_stripe(body: bytes, header: str, secret: str, now: datetime) -> None:
    """Stripe's scheme: any ``v1`` = hex HMAC-SHA256(secret, ``t.body``), ``t`` within tolerance."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        stamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise HTTPException(400, "Stripe-Signature has no timestamp (t=...)") from None
    if not parts.get("v1"):
        raise HTTPException(400, "Stripe-Signature has no v1 signature")
    signed = f"{stamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
    if not any(hmac.compare_digest(expected, v.encode()) for v in parts["v1"]):
        raise HTTPException(400, "Stripe-Signature does not match the body")
    if abs(now.timestamp() - stamp) > STRIPE_TOLERANCE_SECONDS:   # after the HMAC: t is signed
        raise HTTPException(400, f"Stripe-Signature timestamp is more than {STRIPE_TOLERANCE_SECONDS}s "
                                 "from now (a replay, or a clock off)")


async def _accept(svc: Services, payload: dict[str, Any],
                  mapper: Callable[[Services, dict[str, Any]], dict[str, Any]]) -> JSONResponse:
    def work():
        event = mapper(svc, payload)
        return accept_items(svc, [event])

    try:
        result, accepted = await run_in_threadpool(work)
    except Ignored as exc:
        log.info("shop webhook ignored: %s", exc)
        return JSONResponse({"ignored": str(exc)})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HTTPException(422, f"the payload is not shaped like this webhook's: {type(exc).__name__} {exc}") from None
    if result.rejected:   # the payload maps to an invalid event: say why, and let the shop retry
        raise HTTPException(422, {"message": "the payload maps to an invalid event",
                                  "rejected": [r.to_json() for r in result.rejected]})
    task = BackgroundTask(emit_to_prefect, accepted) if svc.emit_prefect and accepted else None
    return JSONResponse(result.to_json(), background=task)


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise HTTPException(400, "the body is not a JSON object")
    return payload


# ---------------------------------------------------------------- Shopify

def shopify_order(_svc: Services, order: dict[str, Any]) -> dict[str, Any]:
    """orders/create → order.placed."""
    buyer = order.get("customer") or {}
    billing = order.get("billing_address") or {}
    email = order.get("email") or order.get("contact_email") or buyer.get("email")
    if not email:
        raise Ignored(f"order {order.get('id')} has no email address")
    name = " ".join(p for p in (buyer.get("first_name"), buyer.get("last_name")) if p) or billing.get("name")
    customer_id = f"shopify-{buyer['id']}" if buyer.get("id") else _guest("shopify", email)
    items = [{"sku": li.get("sku") or f"variant-{li.get('variant_id')}", "name": li.get("title") or li.get("name"),
              "quantity": li.get("quantity", 1), "price": _money(li.get("price")),
              **({"category": li["product_type"]} if li.get("product_type") else {})}
             for li in order.get("line_items") or []]
    return {"id": f"shopify-order-{order['id']}", "type": "order.placed", "occurred_at": order.get("created_at"),
            "customer": _customer(customer_id, email, name, order.get("customer_locale")),
            "data": {"order_id": str(order.get("order_number") or order["id"]), "shop_order_id": str(order["id"]),
                     "total": _money(order.get("total_price")), "currency": order.get("currency"),
                     "items": items, "source": "shopify"}}


def shopify_fulfillment(svc: Services, fulfillment: dict[str, Any]) -> dict[str, Any]:
    """fulfillments/create → order.shipped, for the customer of the stored order."""
    order = _stored_order(svc, f"shopify-order-{fulfillment.get('order_id')}")
    items = [{"sku": li.get("sku") or f"variant-{li.get('variant_id')}", "name": li.get("title") or li.get("name"),
              "quantity": li.get("quantity", 1)} for li in fulfillment.get("line_items") or []]
    return {"id": f"shopify-fulfillment-{fulfillment['id']}", "type": "order.shipped",
            "occurred_at": fulfillment.get("created_at"), "customer": order["customer"],
            "data": {"order_id": order["data"].get("order_id"), "shop_order_id": str(fulfillment.get("order_id")),
                     "tracking_company": fulfillment.get("tracking_company"),
                     "tracking_number": fulfillment.get("tracking_number"),
                     "tracking_url": fulfillment.get("tracking_url"), "items": items, "source": "shopify"}}


def shopify_refund(svc: Services, refund: dict[str, Any]) -> dict[str, Any]:
    """refunds/create → order.refunded, for the customer of the stored order."""
    order = _stored_order(svc, f"shopify-order-{refund.get('order_id')}")
    refunded = [t for t in refund.get("transactions") or []
                if t.get("kind") == "refund" and t.get("status") == "success"]
    amount = round(sum(_money(t.get("amount")) or 0.0 for t in refunded), 2)
    total = order["data"].get("total")
    items = [{"sku": (rli.get("line_item") or {}).get("sku"), "quantity": rli.get("quantity")}
             for rli in refund.get("refund_line_items") or []]
    return {"id": f"shopify-refund-{refund['id']}", "type": "order.refunded",
            "occurred_at": refund.get("processed_at") or refund.get("created_at"), "customer": order["customer"],
            "data": {"order_id": order["data"].get("order_id"), "shop_order_id": str(refund.get("order_id")),
                     "amount": amount,
                     "currency": refunded[0].get("currency") if refunded else order["data"].get("currency"),
                     "full": bool(total) and amount >= float(total) - 0.005, "items": items, "source": "shopify"}}


SHOPIFY_TOPICS: dict[str, Callable[[Services, dict[str, Any]], dict[str, Any]]] = {
    "orders/create": shopify_order,
    "fulfillments/create": shopify_fulfillment,
    "refunds/create": shopify_refund,
}


def _stored_order(svc: Services, event_id: str) -> dict[str, Any]:
    """The customer (as they are now) and data of an order event taken before."""
    with Session(svc.ctx.engine) as session:
        event = session.get(EventRow, event_id)
        customer = session.get(CustomerRow, event.customer_id) if event and event.customer_id else None
    if event is None or customer is None:
        raise Ignored(f"unknown order {event_id}: it was placed before postsale received this shop's orders")
    if not customer.email:
        raise Ignored(f"the customer of {event_id} was forgotten")
    return {"customer": _customer(customer.id, customer.email, customer.name, customer.locale, customer.timezone),
            "data": dict(event.data or {})}


# ---------------------------------------------------------------- Stripe

def stripe_checkout(_svc: Services, event: dict[str, Any]) -> dict[str, Any]:
    """A paid Checkout Session → order.placed (line items only when the payload has them)."""
    session = (event.get("data") or {}).get("object") or {}
    paid = session.get("payment_status") in ("paid", "no_payment_required")
    if event.get("type") == "checkout.session.completed" and not paid:
        raise Ignored(f"checkout {session.get('id')} is not paid yet ({session.get('payment_status')}); "
                      "checkout.session.async_payment_succeeded will follow")
    details = session.get("customer_details") or {}
    email = details.get("email") or session.get("customer_email")
    if not email:
        raise Ignored(f"checkout {session.get('id')} has no email address")
    currency = str(session.get("currency") or "").lower()
    unit = 1 if currency in ZERO_DECIMAL else 100
    items = []
    for li in ((session.get("line_items") or {}).get("data") or []):
        price = li.get("price") or {}
        quantity = li.get("quantity") or 1
        items.append({"sku": price.get("lookup_key") or price.get("product") or price.get("id"),
                      "name": li.get("description"), "quantity": quantity,
                      "price": round((li.get("amount_total") or 0) / unit / quantity, 2)})
    customer_id = f"stripe-{session['customer']}" if session.get("customer") else _guest("stripe", email)
    locale = session.get("locale") if session.get("locale") not in (None, "auto") else None
    metadata = session.get("metadata") or {}
    created = event.get("created") or session.get("created")
    return {"id": f"stripe-checkout-{session['id']}", "type": "order.placed",
            "occurred_at": datetime.fromtimestamp(int(created), timezone.utc).isoformat() if created else None,
            "customer": _customer(customer_id, email, details.get("name"), locale),
            "data": {"order_id": str(metadata.get("order_id") or session.get("client_reference_id") or session["id"]),
                     "checkout_session": session["id"], "total": round((session.get("amount_total") or 0) / unit, 2),
                     "currency": currency.upper(), "items": items, "source": "stripe"}}


STRIPE_TYPES: dict[str, Callable[[Services, dict[str, Any]], dict[str, Any]]] = {
    "checkout.session.completed": stripe_checkout,
    "checkout.session.async_payment_succeeded": stripe_checkout,
}


# ---------------------------------------------------------------- shared

def _customer(customer_id: str, email: str, name: str | None, locale: str | None,
              tz: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": customer_id, "email": email.strip(), "name": name or None}
    if locale and _LOCALE.match(locale):
        out["locale"] = locale
    if tz:
        out["timezone"] = tz
    return out


def _guest(source: str, email: str) -> str:
    return f"{source}-guest-{hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]}"


def _money(value: Any) -> float | None:
    try:
        return round(float(value), 2)
    except (TypeError, ValueError):
        return None


__all__ = ["router", "verify_stripe", "shopify_order", "shopify_fulfillment", "shopify_refund", "stripe_checkout"]

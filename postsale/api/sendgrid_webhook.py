"""``POST /webhooks/sendgrid``: SendGrid's Signed Event Webhook.

The app includes ``router`` and provides the ``Context`` and ``Settings`` through
``app.state.ctx`` and ``app.state.settings`` (or overrides ``get_context`` / ``get_settings``).

- 403 unless the ECDSA signature over ``timestamp + raw body`` verifies with
  ``POSTSALE_SENDGRID_WEBHOOK_PUBLIC_KEY`` and the timestamp is within
  ``POSTSALE_SENDGRID_WEBHOOK_MAX_AGE`` seconds (default 600) of now: a captured request
  cannot be replayed later.
- 503 when no valid public key is configured: unsigned events are never taken, and SendGrid
  keeps retrying for 24 hours, so nothing is lost while the key is being set.
- 400 for a signed body that is not a JSON array.
- 200 with counts otherwise: received, stored, duplicates, ignored (unknown types, by type),
  invalid items, unmatched, settled, engine events. A replayed batch stores nothing again.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from postsale.delivery.webhook import (SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidWebhook, load_public_key,
                                       parse_events, verify_signature)
from postsale.api.deps import MAX_BODY_BYTES, read_body
from postsale.settings import Settings
from postsale.store.context import Context
from postsale.store.delivery_events import record_events

router = APIRouter(tags=["webhooks"])


def get_context(request: Request) -> Context:
    return request.app.state.ctx


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def _record_locked(services: Any, ctx: Context, events: Any) -> Any:
    """Under serve's writer lock: a webhook write must not interleave a dispatch batch."""
    if services is None:
        return record_events(ctx, events)
    with services.dispatcher.writing():
        return record_events(ctx, events)


@lru_cache(maxsize=4)
def _key(public_key: str) -> Any:
    return load_public_key(public_key)


@router.post("/webhooks/sendgrid")
async def sendgrid_events(request: Request, ctx: Context = Depends(get_context),
                          settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    """Verify, parse, store and apply a batch of SendGrid events."""
    if not settings.sendgrid_webhook_public_key:
        raise HTTPException(503, "POSTSALE_SENDGRID_WEBHOOK_PUBLIC_KEY is not set: events are refused")
    try:
        key = _key(settings.sendgrid_webhook_public_key)
    except InvalidWebhook as exc:
        raise HTTPException(503, str(exc)) from None
    services = getattr(request.app.state, "services", None)
    body = await read_body(request, services.max_body_bytes if services else MAX_BODY_BYTES)
    now = ctx.clock.now()
    try:
        verify_signature(key, body,
                         request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER),
                         now=now, max_age_seconds=settings.sendgrid_webhook_max_age)
    except InvalidWebhook as exc:
        raise HTTPException(403, f"invalid webhook signature: {exc}") from None
    try:
        batch = parse_events(body, now=now)
    except InvalidWebhook as exc:
        raise HTTPException(400, str(exc)) from None
    result = await run_in_threadpool(_record_locked, services, ctx, batch.events)
    return {**result.to_json(), "received": len(batch.events) + sum(batch.unknown.values()) + batch.invalid,
            "ignored": sum(batch.unknown.values()), "ignored_types": dict(batch.unknown),
            "invalid": batch.invalid}

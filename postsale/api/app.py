"""The FastAPI application of SPEC.md §7, built from one Settings.

    POST   /events                 events (one object, an array or NDJSON), bearer token → 202
    DELETE /customers?email=       forget a person, bearer token → what was erased
    GET    /healthz                liveness and database reachability (503 when the DB is down)
    GET    /u/{token}              unsubscribe confirmation page (or preferences, ?prefs=1)
    POST   /u/{token}              RFC 8058 one-click unsubscribe
    GET    /u/{token}/preferences  marketing on/off; order and issue mail always go
    POST   /u/{token}/preferences
    GET    /s/{token}?a=N          one-click survey answer (provisional) and the survey page
    POST   /s/{token}              the page's form: confirms, takes the other questions
    POST   /webhooks/shopify       orders/create, fulfillments/create, refunds/create (HMAC)
    POST   /webhooks/stripe        checkout.session.completed (Stripe-Signature, 5-minute tolerance)
    POST   /webhooks/sendgrid      SendGrid Event Webhook (postsale.api.sendgrid_webhook)

Writes go through the ``Dispatcher``'s lock and trigger its immediate dispatch; ``postsale
serve`` passes the one it schedules. Without one, the app makes its own (no interval tick:
dispatch then happens for the customers the API touches, and through ``postsale dispatch``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

from postsale.api import events, health, links, shops
from postsale.api.deps import MAX_BODY_BYTES, Services, make_pages
from postsale.settings import Settings
from postsale.store.context import Context

if TYPE_CHECKING:
    from postsale.serve import Dispatcher

log = logging.getLogger("postsale.api")

SENDGRID_MODULE = "postsale.api.sendgrid_webhook"


def create_app(settings: Settings, *, ctx: Context | None = None, dispatcher: "Dispatcher | None" = None,
               max_body_bytes: int = MAX_BODY_BYTES, emit_prefect: bool | None = None) -> FastAPI:
    """The app; ``emit_prefect`` defaults to "PREFECT_API_URL is set" (read here, at the edge)."""
    from postsale.serve import Dispatcher

    ctx = ctx or Context.from_settings(settings)
    owns_dispatcher = dispatcher is None
    if dispatcher is None:
        from postsale.delivery.factory import make_transport
        dispatcher = Dispatcher(ctx, make_transport(settings), interval_seconds=settings.dispatch_interval_seconds,
                                reconcile_after=settings.delivery_reconcile_after)
    if emit_prefect is None:
        emit_prefect = bool(os.environ.get("PREFECT_API_URL"))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if owns_dispatcher:
            dispatcher.start(schedule=False)
        try:
            yield
        finally:
            if owns_dispatcher:
                dispatcher.stop()

    app = FastAPI(title="postsale", version="0.1.0", lifespan=lifespan,
                  description="Post-sale email journeys: events in, links and webhooks (SPEC.md §7).")
    app.state.ctx, app.state.settings = ctx, settings          # what sendgrid_webhook reads
    app.state.services = Services(settings=settings, ctx=ctx, dispatcher=dispatcher, pages=make_pages(),
                                  max_body_bytes=max_body_bytes, emit_prefect=emit_prefect)
    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # The database is down, unreachable or locked: nothing was taken, the caller retries.
        log.warning("database unavailable: %s", str(exc).splitlines()[0])
        return JSONResponse({"detail": "the database is unavailable; nothing was taken, retry later"},
                            status_code=503, headers={"Retry-After": "5"})

    app.include_router(events.router)
    app.include_router(health.router)
    app.include_router(links.router)
    app.include_router(shops.router)
    if importlib.util.find_spec(SENDGRID_MODULE) is not None:
        from postsale.api.sendgrid_webhook import router as sendgrid_router
        app.include_router(sendgrid_router)
    else:
        log.warning("%s is not installed: POST /webhooks/sendgrid answers 404", SENDGRID_MODULE)
    return app


__all__ = ["create_app"]

"""What the routes share: the services, the bearer token, bounded bodies, forms, pages, and the
one path every incoming event takes (ingest under the write lock → immediate dispatch → Prefect).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from email.message import Message as MimeHeader
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from postsale.events import Event, Rejected, parse_batch
from postsale.settings import Settings
from postsale.store.context import Context
from postsale.store.ingest import IngestResult, ingest_events

if TYPE_CHECKING:
    from postsale.serve import Dispatcher

log = logging.getLogger("postsale.api")

MAX_BODY_BYTES = 5 * 1024 * 1024      # POST /events and the shop webhooks
MAX_FORM_BYTES = 64 * 1024            # the link pages' forms
INGEST_CHUNK = 500                    # events per transaction (~0.1 s of lock; released between)
PAGES = Path(__file__).parent / "pages"

# Pages carry tokens in their URL: never leak them in a Referer, never frame, never script.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass
class Services:
    settings: Settings
    ctx: Context
    dispatcher: "Dispatcher"
    pages: Environment
    max_body_bytes: int = MAX_BODY_BYTES
    emit_prefect: bool = False

    @property
    def brand(self) -> dict[str, str]:
        policy = self.ctx.policy
        name, address = parseaddr(policy.sender.from_)
        return {"name": name or address or "us", "postal_address": policy.postal_address}


def services(request: Request) -> Services:
    return request.app.state.services


def make_pages() -> Environment:
    env = Environment(loader=FileSystemLoader(str(PAGES)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    return env


def page(svc: Services, name: str, status: int = 200, **scope: Any) -> HTMLResponse:
    html = svc.pages.get_template(name).render(brand=svc.brand, **scope)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


# ---------------------------------------------------------------- auth and bodies

def require_token(request: Request) -> None:
    """``Authorization: Bearer POSTSALE_API_TOKEN``, compared in constant time."""
    token = services(request).settings.api_token
    if not token:
        raise HTTPException(503, "the API token is not configured: set POSTSALE_API_TOKEN "
                                 "(python -c 'import secrets; print(secrets.token_urlsafe(32))') and restart")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(401, "missing or wrong bearer token: send Authorization: Bearer <POSTSALE_API_TOKEN>",
                            headers={"WWW-Authenticate": 'Bearer realm="postsale"'})


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HTTPException(400, "Content-Length is not a number") from None
        if size > limit:
            raise HTTPException(413, f"the body is {size} bytes; the limit is {limit} "
                                     "(split the batch, or raise serve --max-body-bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body exceeds the limit of {limit} bytes "
                                     "(split the batch, or raise serve --max-body-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded or multipart form (RFC 8058 allows both), first value per name."""
    body = await read_body(request, MAX_FORM_BYTES)
    content_type = request.headers.get("content-type", "application/x-www-form-urlencoded")
    header = MimeHeader()
    header["content-type"] = content_type
    if header.get_content_type() == "multipart/form-data":
        parsed = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
        form: dict[str, str] = {}
        for part in parsed.iter_parts() if parsed.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str) and name not in form:
                payload = part.get_payload(decode=True) or b""
                form[name] = payload.decode(part.get_content_charset() or "utf-8", "replace")
        return form
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    form = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


# ---------------------------------------------------------------- accepting events

def accept_items(svc: Services, items: list[Any]) -> tuple[IngestResult, list[dict[str, Any]]]:
    """Validate and ingest raw events in chunks under the write lock, then trigger an immediate
    dispatch for the customers whose runs changed. Returns the result and the accepted events
    (for Prefect)."""
    return accept_parsed(svc, *parse_batch(items))


def accept_parsed(svc: Services, good: list[tuple[int, Event]], bad: list[Rejected], *, collect: bool = True
                  ) -> tuple[IngestResult, list[dict[str, Any]]]:
    """``collect=False``: the accepted events are not wanted (no Prefect to hand them to), so
    they are not turned back into JSON objects."""
    result = IngestResult(rejected=list(bad))
    accepted: list[dict[str, Any]] = []
    for start in range(0, len(good), INGEST_CHUNK):
        chunk = [event for _, event in good[start:start + INGEST_CHUNK]]
        with svc.dispatcher.writing():
            part = ingest_events(svc.ctx, chunk)
        if collect:
            fresh = set(part.accepted)
            for event in chunk:
                if event.id in fresh:
                    fresh.discard(event.id)
                    accepted.append(event.to_json())
        result.merge(part)
    result.rejected.sort(key=lambda r: r.index)
    svc.dispatcher.trigger(result.customers)
    return result, accepted


def emit_to_prefect(events: list[dict[str, Any]]) -> None:
    """Hand accepted events to Prefect (deployment triggers); a failure is logged, never raised."""
    try:
        from flows.events import emit_postsale_event
    except Exception as exc:
        log.warning("PREFECT_API_URL is set but flows.events.emit_postsale_event is unavailable: %s", exc)
        return
    for event in events:
        try:
            emit_postsale_event(event)
        except Exception as exc:
            log.warning("could not emit event %s to Prefect: %s", event.get("id"), exc)


__all__ = ["Services", "services", "make_pages", "page", "require_token", "read_body", "read_form",
           "accept_items", "accept_parsed", "emit_to_prefect", "MAX_BODY_BYTES", "PAGE_HEADERS"]

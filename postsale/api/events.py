"""POST /events (SPEC.md §2, §7) and DELETE /customers (erasure): the bearer-token doors.

``POST /events`` takes one object, an array or NDJSON and answers 202 with the fate of every
item: ``accepted`` and ``duplicate`` counts, ``rejected`` (index, id, field, reason). One bad
item never costs the rest; an undecodable NDJSON line is rejected alone. Only a body with no
JSON in it at all is a 400. The response never waits for dispatch or delivery: the customers
whose runs changed are dispatched right after, in the dispatcher's worker thread.
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from postsale.api.deps import accept_parsed, emit_to_prefect, read_body, require_token, services
from postsale.events import decode_batch, parse_batch
from postsale.store.erase import forget

router = APIRouter(tags=["events"])

_USAGE = "send one event object, an array of events, or NDJSON (one event per line)"


@router.post("/events", status_code=202)
async def post_events(request: Request) -> JSONResponse:
    """Take events; 202 with accepted / duplicate / rejected."""
    svc = services(request)
    require_token(request)
    body = await read_body(request, svc.max_body_bytes)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the body is not UTF-8 ({exc.reason} at byte {exc.start}): {_USAGE}") from None

    def parse():
        items = decode_batch(text)
        return items, *parse_batch(items)

    items, good, bad = await run_in_threadpool(parse)
    if not items:
        raise HTTPException(400, f"the body is empty: {_USAGE}")
    if not good and all(r.field == "json" for r in bad):
        raise HTTPException(400, f"the body is not JSON ({bad[0].reason}): {_USAGE}")
    result, accepted = await run_in_threadpool(partial(accept_parsed, collect=svc.emit_prefect), svc, good, bad)
    task = BackgroundTask(emit_to_prefect, accepted) if svc.emit_prefect and accepted else None
    return JSONResponse(result.to_json(), status_code=202, background=task)


@router.delete("/customers")
def delete_customer(request: Request, email: str | None = Query(None, description="the address to forget")) -> dict:
    """Erase a person's data, keeping a hashed suppression; what was erased, counted."""
    require_token(request)
    if not email or "@" not in email or len(email) > 254:
        raise HTTPException(400, "email must be an address like ada@example.com")
    svc = services(request)
    with svc.dispatcher.writing():
        report = forget(svc.ctx, email, now=svc.ctx.clock.now())
    return report.to_json()

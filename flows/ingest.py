"""The ``ingest`` flow: events in, in batches; each rejection logged with its field and reason.

Called with ``events`` (a list), with one ``event`` (what the ``on-order-placed`` deployment
trigger passes from the ``postsale.order.placed`` Prefect event), or with ``path``, a JSON or
NDJSON file the worker can read: Prefect refuses flow run parameters over 512 KB (about 1,500
orders), so a large import goes by file. Ingest is once-only by event id, so an event the API
already stored comes back as a duplicate and changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.runtime import runtime
from flows.tasks import ingest_batch
from postsale.events import decode_batch
from postsale.store.ingest import IngestResult


def _run_name() -> str:
    params = flow_run.parameters or {}
    event = params.get("event")
    if isinstance(event, dict):
        return f"ingest {event.get('type', '?')} {event.get('id', params.get('event_id') or '?')}"
    if params.get("path"):
        return f"ingest {Path(str(params['path'])).name}"
    return f"ingest {len(params.get('events') or [])} events"


@flow(name="ingest", flow_run_name=_run_name)
def ingest(events: list[Any] | None = None, event: dict[str, Any] | None = None,
           event_id: str | None = None, path: str | None = None, batch_size: int = 500) -> dict[str, Any]:
    """Validate, store and apply events: a list, the one a trigger passes, or a file's."""
    logger = get_run_logger()
    items: list[Any] = list(events or []) + ([event] if event is not None else [])
    if path:
        items += decode_batch(Path(path).read_text(encoding="utf-8"))
    if not items:
        logger.warning("nothing to ingest%s", f" (trigger for event {event_id} carried no event)" if event_id else "")
        return {"accepted": 0, "duplicate": 0, "rejected": 0, "entered": 0, "customers": 0}
    size = max(1, batch_size)
    total = IngestResult()
    with runtime() as rt:
        for start in range(0, len(items), size):
            part = ingest_batch(rt.ctx, items[start:start + size])
            part.rejected = [replace(r, index=r.index + start) for r in part.rejected]
            total.merge(part)
    for rejected in total.rejected:
        logger.warning("rejected event #%d (id %s): %s: %s", rejected.index, rejected.event_id or "?",
                       rejected.field, rejected.reason)
    logger.info("accepted %d, duplicates %d, rejected %d; %d runs entered for %d customers",
                len(total.accepted), len(total.duplicates), len(total.rejected), len(total.entered),
                len(total.customers))
    return {"accepted": len(total.accepted), "duplicate": len(total.duplicates),
            "rejected": len(total.rejected), "entered": len(total.entered),
            "customers": len(total.customers),
            "rejections": [r.to_json() for r in total.rejected]}

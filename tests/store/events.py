"""Raw event builders for storage tests (as a shop would post them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from postsale.events import Event, parse_event


def customer(cid: str = "c-42", *, tz: str = "Europe/Rome", email: str | None = None, **extra: Any) -> dict:
    return {"id": cid, "email": email or f"{cid}@example.com", "name": cid.upper(), "timezone": tz, **extra}


def raw(eid: str, etype: str, at: datetime, cust: dict | None = None, **data: Any) -> dict:
    out: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": at.isoformat(), "data": data}
    if cust is not None:
        out["customer"] = cust
    return out


def event(eid: str, etype: str, at: datetime, cust: dict | None = None, **data: Any) -> Event:
    return parse_event(raw(eid, etype, at, cust, **data))


def order(eid: str, at: datetime, cust: dict, *, skus=(("KETTLE-1", "kitchen"),), total: float = 129.0) -> Event:
    items = [{"sku": sku, "name": sku.title(), "category": cat, "quantity": 1, "price": total} for sku, cat in skus]
    return event(eid, "order.placed", at, cust, order_id=eid, total=total, currency="EUR", items=items)

"""Events as SPEC.md §2 defines them, validated one by one at the edge.

``parse_event(raw)`` returns a frozen ``Event`` or raises ``InvalidEvent`` naming the field;
``parse_batch(text)`` reads one object, an array or NDJSON and keeps going past bad items, so
that one bad event never costs the rest of its batch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from postsale.errors import InvalidEvent

KNOWN_TYPES = frozenset({
    "lead.created", "question.asked", "cart.abandoned", "order.placed", "order.shipped",
    "order.delivered", "order.refunded", "order.cancelled", "support.requested",
    "support.replied", "ticket.opened", "ticket.resolved", "incident.declared",
    "incident.resolved",
})
ENGINE_TYPES = frozenset({
    "survey.answered", "email.delivered", "email.opened", "email.clicked", "email.bounced",
    "email.complained", "email.unsubscribed",
})
BROADCAST_TYPES = frozenset({"incident.declared", "incident.resolved"})
SUPPRESSING_TYPES = {"email.bounced": "bounced", "email.complained": "complained",
                     "email.unsubscribed": "unsubscribed"}

_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
# Deliberately plain: one @, a dotted domain, no spaces or control characters (header safety).
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_LOCALE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})$")
MAX_ID = 200
_ZONES: set[str] = set()   # time zone names ZoneInfo has accepted (a batch repeats a few)


@dataclass(frozen=True)
class Customer:
    id: str
    email: str
    name: str | None = None
    timezone: str = "UTC"
    locale: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def scope(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "name": self.name, "timezone": self.timezone,
                "locale": self.locale, "attributes": dict(self.attributes)}


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    occurred_at: datetime                 # timezone-aware, normalised to UTC
    customer: Customer | None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_broadcast(self) -> bool:
        return self.type in BROADCAST_TYPES

    @cached_property
    def occurred_iso(self) -> str:
        """``occurred_at.isoformat()``, once (every scope and run started carries it)."""
        return self.occurred_at.isoformat()

    def scope(self) -> dict[str, Any]:
        """The ``event`` name of expressions and templates."""
        return {"id": self.id, "type": self.type, "occurred_at": self.occurred_iso, "data": self.data}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type, "occurred_at": self.occurred_iso,
                               "data": self.data}
        if self.customer:
            out["customer"] = self.customer.scope()
        return out


def parse_timestamp(value: Any, field_name: str = "occurred_at") -> datetime:
    """RFC 3339 with an offset (``Z`` allowed) → aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise InvalidEvent(field_name, "required: an RFC 3339 timestamp with offset, like 2026-11-20T10:15:00+01:00")
    text = value.strip()
    if not _RFC3339.match(text):
        raise InvalidEvent(field_name, f"{value!r} is not RFC 3339 with an offset (like 2026-11-20T10:15:00+01:00)")
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEvent(field_name, f"{value!r} is not a valid time: {exc}") from None
    return parsed.astimezone(timezone.utc)


def _string(raw: dict, key: str, field_name: str, *, required: bool, max_len: int = MAX_ID) -> str | None:
    value = raw.get(key)
    if value.__class__ is str and value and len(value) <= max_len and _header_safe(value):
        return value   # the common case, decided without the checks below
    if value is None or value == "":
        if required:
            raise InvalidEvent(field_name, "required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(field_name, f"must be a string, not {type(value).__name__}")
    text = str(value)
    if len(text) > max_len:
        raise InvalidEvent(field_name, f"longer than {max_len} characters")
    if not _header_safe(text):
        raise InvalidEvent(field_name, "must not contain line breaks or NUL")
    return text


def _header_safe(text: str) -> bool:
    return "\n" not in text and "\r" not in text and "\x00" not in text


def parse_customer(raw: Any) -> Customer:
    if not isinstance(raw, dict):
        raise InvalidEvent("customer", "required: an object with id and email")
    cid = _string(raw, "id", "customer.id", required=True)
    email = _string(raw, "email", "customer.email", required=True, max_len=254)
    assert cid is not None and email is not None
    if not _EMAIL.match(email):
        raise InvalidEvent("customer.email", f"{email!r} is not a valid email address")
    name = _string(raw, "name", "customer.name", required=False, max_len=200)
    tz = _string(raw, "timezone", "customer.timezone", required=False, max_len=64) or "UTC"
    if tz not in _ZONES:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidEvent("customer.timezone",
                               f"unknown time zone {tz!r} (use an IANA name like Europe/Rome)") from None
        _ZONES.add(tz)
    locale = _string(raw, "locale", "customer.locale", required=False, max_len=35)
    if locale is not None and not _LOCALE.match(locale):
        raise InvalidEvent("customer.locale", f"{locale!r} is not a locale like 'it' or 'en-US'")
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidEvent("customer.attributes", "must be an object")
    return Customer(id=cid, email=email.strip(), name=name, timezone=tz,
                    locale=locale.lower().replace("_", "-") if locale else None,
                    attributes=attributes)


def parse_event(raw: Any) -> Event:
    """Validate one event; raise InvalidEvent naming the first bad field."""
    if not isinstance(raw, dict):
        raise InvalidEvent("event", f"must be a JSON object, not {type(raw).__name__}")
    event_id = _string(raw, "id", "id", required=True)
    assert event_id is not None
    try:
        etype = _string(raw, "type", "type", required=True, max_len=100)
        assert etype is not None
        if not _TYPE.match(etype):
            raise InvalidEvent("type", f"{etype!r} is not a dotted event name like order.placed")
        occurred_at = parse_timestamp(raw.get("occurred_at"))
        data = raw.get("data") or {}
        if not isinstance(data, dict):
            raise InvalidEvent("data", "must be an object")
        customer = None
        if etype in BROADCAST_TYPES:
            skus = data.get("skus")
            if not isinstance(skus, list) or not skus or not all(isinstance(s, str) and s for s in skus):
                raise InvalidEvent("data.skus", "required for incidents: a non-empty list of SKU strings")
            for key in ("purchased_after", "purchased_before"):
                if data.get(key) is not None:
                    parse_timestamp(data[key], f"data.{key}")
            if raw.get("customer") is not None:
                customer = parse_customer(raw["customer"])
        else:
            customer = parse_customer(raw.get("customer"))
        if etype == "survey.answered":
            answers = data.get("answers")
            if not isinstance(data.get("survey"), str) or not data.get("survey"):
                raise InvalidEvent("data.survey", "required: the survey id")
            if not isinstance(answers, dict):
                raise InvalidEvent("data.answers", "required: an object of answers by question id")
    except InvalidEvent as exc:
        exc.event_id = event_id
        raise
    return Event(id=event_id, type=etype, occurred_at=occurred_at, customer=customer, data=data)


@dataclass(frozen=True)
class Rejected:
    index: int
    event_id: str | None
    field: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.event_id, "field": self.field, "reason": self.reason}


def decode_batch(text: str) -> list[Any]:
    """One object, an array, or NDJSON → a list of raw items (an undecodable NDJSON line
    becomes an ``_InvalidLine`` marker so that it is rejected alone)."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        whole = _loads(stripped)
    except RecursionError:                 # thousands of nested brackets: refused, not a crash
        return [_InvalidLine(1, "JSON nested too deeply")]
    except json.JSONDecodeError:
        items: list[Any] = []
        for number, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(_loads(line))
            except json.JSONDecodeError as exc:
                items.append(_InvalidLine(number, exc.msg))
            except RecursionError:
                items.append(_InvalidLine(number, "JSON nested too deeply"))
        return items
    return whole if isinstance(whole, list) else [whole]


def _loads(text: str) -> Any:
    """``json.loads``, through orjson when it can: several times faster on a batch, and what it
    accepts it reads to the same values. What it refuses (NaN, out-of-range numbers, lone
    surrogates, deep nesting, several documents) goes to ``json.loads``, which decides as before."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@dataclass(frozen=True)
class _InvalidLine:
    line: int
    message: str


def parse_batch(items: list[Any]) -> tuple[list[tuple[int, Event]], list[Rejected]]:
    """Validate every item; good ones keep their index in the batch."""
    good: list[tuple[int, Event]] = []
    bad: list[Rejected] = []
    for index, raw in enumerate(items):
        if isinstance(raw, _InvalidLine):
            bad.append(Rejected(index, None, "json", f"line {raw.line}: {raw.message}"))
            continue
        try:
            good.append((index, parse_event(raw)))
        except InvalidEvent as exc:
            rid = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), (str, int)) else None
            bad.append(Rejected(index, None if rid is None else str(rid), exc.field, exc.message))
    return good, bad

"""SendGrid's Event Webhook at the edge: verify the signature, turn provider JSON into ours.

Nothing past this module sees SendGrid's event JSON (STYLE.md §6). ``verify_signature`` checks
the Signed Event Webhook (ECDSA P-256 over ``timestamp + raw body``, with the public key from
``POSTSALE_SENDGRID_WEBHOOK_PUBLIC_KEY``) and our own age limit on the timestamp;
``parse_events`` maps each event to a frozen ``DeliveryEvent`` with a fixed ``EventType``.

    SendGrid "event"         EventType             engine event (delivery_events.py)
    processed                processed             -   (evidence the request was accepted)
    deferred                 deferred              -
    delivered                delivered             email.delivered
    open                     opened                email.opened  (not for Apple MPP machine opens)
    click                    clicked               email.clicked
    bounce (type=bounce)     bounced               email.bounced
    bounce (type=blocked)    blocked               -   (a temporary refusal: no suppression)
    dropped                  dropped               -
    spamreport               complained            email.complained
    unsubscribe              unsubscribed          email.unsubscribed
    group_unsubscribe        group_unsubscribed    email.unsubscribed
    group_resubscribe        group_resubscribed    -
    anything else            ignored, counted by type

Dedupe key: ``sg_event_id`` (SendGrid retries a batch for 24 hours and every copy carries the
same ids); an event without one (async bounces may lack it) is keyed by a hash of its
canonical JSON, so a replayed copy still collides.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Mapping

from postsale.errors import PostsaleError

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MESSAGE_ID_ARG = "postsale_message_id"     # our id, sent in custom_args, echoed on every event
# Personal data we do not keep in the stored payload (the address is kept hashed).
_PRIVATE_KEYS = frozenset({"email", "ip", "useragent"})


class InvalidWebhook(PostsaleError, ValueError):
    """A webhook request we refuse: bad or missing signature, stale timestamp, bad body."""


class EventType(str, Enum):
    processed = "processed"
    deferred = "deferred"
    delivered = "delivered"
    opened = "opened"
    clicked = "clicked"
    bounced = "bounced"
    blocked = "blocked"
    dropped = "dropped"
    complained = "complained"
    unsubscribed = "unsubscribed"
    group_unsubscribed = "group_unsubscribed"
    group_resubscribed = "group_resubscribed"


_SENDGRID_TYPES = {
    "processed": EventType.processed, "deferred": EventType.deferred,
    "delivered": EventType.delivered, "open": EventType.opened, "click": EventType.clicked,
    "bounce": EventType.bounced, "dropped": EventType.dropped, "spamreport": EventType.complained,
    "unsubscribe": EventType.unsubscribed, "group_unsubscribe": EventType.group_unsubscribed,
    "group_resubscribe": EventType.group_resubscribed,
}


@dataclass(frozen=True)
class DeliveryEvent:
    key: str                           # dedupe key: "sg:<sg_event_id>" or "h:<sha256>"
    type: EventType
    email: str | None
    occurred_at: datetime              # aware UTC
    message_id: str | None = None      # ours, from custom_args
    provider_message_id: str | None = None   # X-Message-Id part of sg_message_id
    reason: str | None = None          # bounce/drop/deferral reason
    url: str | None = None             # clicked link
    group_id: int | None = None        # unsubscribe group
    machine: bool = False              # an Apple Mail Privacy Protection open
    payload: dict[str, Any] = field(default_factory=dict, compare=False)   # stored, minus personal data


@dataclass
class ParsedBatch:
    events: list[DeliveryEvent] = field(default_factory=list)
    unknown: Counter = field(default_factory=Counter)     # ignored SendGrid event types
    invalid: int = 0                                      # items that are not events at all


# ---------------------------------------------------------------- signature

def load_public_key(public_key: str) -> Any:
    """SendGrid shows the key as base64 DER; a full PEM block is accepted too."""
    from sendgrid.helpers.eventwebhook import EventWebhook
    body = "".join(line.strip() for line in public_key.strip().splitlines()
                   if line.strip() and not line.startswith("-----"))
    try:
        return EventWebhook().convert_public_key_to_ecdsa(body)
    except Exception as exc:
        raise InvalidWebhook(f"POSTSALE_SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid EC public key: {exc}") from None


def verify_signature(key: Any, body: bytes, signature: str | None, timestamp: str | None, *,
                     now: datetime, max_age_seconds: float) -> None:
    """Raise ``InvalidWebhook`` unless ``signature`` signs ``timestamp + body`` and is recent."""
    from sendgrid.helpers.eventwebhook import EventWebhook
    if not signature or not timestamp:
        raise InvalidWebhook("missing signature or timestamp header")
    try:
        sent_at = float(timestamp)
    except ValueError:
        sent_at = math.nan
    if not math.isfinite(sent_at):
        raise InvalidWebhook("timestamp is not a number")
    age = now.timestamp() - sent_at
    if abs(age) > max_age_seconds:
        raise InvalidWebhook(f"timestamp is {age:.0f}s away from now (limit {max_age_seconds:.0f}s)")
    try:
        # The helper takes the body as str and raises on malformed input (bad base64, DER).
        valid = EventWebhook().verify_signature(body.decode("utf-8"), signature, timestamp, public_key=key)
    except Exception as exc:
        raise InvalidWebhook(f"malformed signature: {type(exc).__name__}") from None
    if not valid:
        raise InvalidWebhook("signature does not match")


# ---------------------------------------------------------------- events

def parse_events(body: bytes | str, *, now: datetime) -> ParsedBatch:
    """A SendGrid event batch (a JSON array) → our events; raises InvalidWebhook if not an array.

    ``now`` dates an event that carries no usable ``timestamp``.
    """
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidWebhook(f"body is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise InvalidWebhook("body is not a JSON array of events")
    batch = ParsedBatch()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("event"), str):
            batch.invalid += 1
            continue
        etype = _SENDGRID_TYPES.get(item["event"])
        if etype is None:
            batch.unknown[item["event"][:50]] += 1
            continue
        batch.events.append(to_event(item, etype, now=now))
    return batch


def to_event(item: Mapping[str, Any], etype: EventType, *, now: datetime) -> DeliveryEvent:
    if etype is EventType.bounced and str(item.get("type", "")).lower() == "blocked":
        etype = EventType.blocked
    sg_event_id = _text(item.get("sg_event_id"))
    if sg_event_id and len(sg_event_id) <= 190:
        key = f"sg:{sg_event_id}"
    else:
        canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
        key = "h:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    sg_message_id = _text(item.get("sg_message_id"))
    group = item.get("asm_group_id")
    return DeliveryEvent(
        key=key, type=etype, email=_text(item.get("email")), occurred_at=_when(item.get("timestamp"), now),
        message_id=_text(item.get(MESSAGE_ID_ARG)),
        provider_message_id=sg_message_id.split(".", 1)[0] if sg_message_id else None,
        reason=_text(item.get("reason") or item.get("response") or item.get("status")),
        url=_text(item.get("url")),
        group_id=group if isinstance(group, int) and not isinstance(group, bool) else None,
        machine=item.get("sg_machine_open") is True,
        payload={k: v for k, v in item.items() if k not in _PRIVATE_KEYS})


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text[:2000] or None


def _when(value: Any, now: datetime) -> datetime:
    """SendGrid's ``timestamp`` (epoch seconds); an event without one is dated ``now``."""
    if isinstance(value, bool):
        return now
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return now

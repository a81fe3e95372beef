"""What happened to the mail: provider events stored once, applied to the outbox and the engine.

``record_events(ctx, events)`` takes our ``DeliveryEvent`` values (``postsale.delivery.webhook``
made them from SendGrid's JSON) and, for each event not seen before:

1. finds its message: by our id from ``custom_args``, else by the provider's message id and the
   recipient (async bounces may carry neither: they still suppress the address);
2. turns it into an engine event (``email.delivered``, ``email.opened``, ``email.clicked``,
   ``email.bounced``, ``email.complained``, ``email.unsubscribed``) for the message's customer and
   ingests it, so suppressions apply before the next dispatch and ``wait_for`` wakes. Engine
   event ids are deterministic (one per message and type: the first open, the first click), so
   ingest's own dedupe makes a replay harmless;
3. stores the event under its dedupe key (``sg_event_id``, else a hash): SendGrid retries a batch
   for 24 hours, and a duplicate insert is the dedupe;
4. moves ``Message.delivery_state`` forward (never back: an open that arrives before its
   delivered event still leaves "opened"), and settles a message whose send had an unknown
   outcome: any provider event is evidence that the provider accepted it (see
   ``postsale.store.delivery``).

Engine events are ingested before the delivery events are stored: if the process dies between
the two, SendGrid's retry finds the events unstored and ingests again, which dedupes.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models import Customer as CustomerRow
from models import DeliveryEvent as DeliveryEventRow
from models import Message, Suppression
from postsale.delivery.webhook import DeliveryEvent, EventType
from postsale.errors import InvalidEvent
from postsale.events import Event, parse_event
from postsale.store.context import Context
from postsale.store.delivery import settle_values
from postsale.store.ingest import ingest_events, suppress
from postsale.store.sql import email_hash, insert_ignore

log = logging.getLogger("postsale.delivery.events")

ENGINE_TYPES: dict[EventType, str] = {
    EventType.delivered: "email.delivered", EventType.opened: "email.opened",
    EventType.clicked: "email.clicked", EventType.bounced: "email.bounced",
    EventType.complained: "email.complained", EventType.unsubscribed: "email.unsubscribed",
    EventType.group_unsubscribed: "email.unsubscribed",
}
SUPPRESSING: dict[EventType, str] = {
    EventType.bounced: "bounced", EventType.complained: "complained",
    EventType.unsubscribed: "unsubscribed", EventType.group_unsubscribed: "unsubscribed",
}
# Message.delivery_state only moves up this ladder; what the report counts per journey.
STATE_RANK = {"processed": 1, "deferred": 2, "delivered": 3, "opened": 4, "clicked": 5, "blocked": 6,
              "dropped": 7, "bounced": 8, "unsubscribed": 9, "complained": 10}
_STATE_OF = {EventType.group_unsubscribed: "unsubscribed", EventType.group_resubscribed: None}


@dataclass
class RecordResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    unmatched: int = 0             # stored, but no message of ours found
    settled: int = 0               # messages marked sent from this evidence
    engine_events: int = 0         # engine events newly ingested
    by_type: Counter = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {"received": self.received, "stored": self.stored, "duplicates": self.duplicates,
                "unmatched": self.unmatched, "settled": self.settled, "engine_events": self.engine_events,
                "by_type": dict(self.by_type)}


def record_events(ctx: Context, events: Iterable[DeliveryEvent], *, now: datetime | None = None) -> RecordResult:
    """Store new provider events, apply them, and ingest their engine events (see module doc)."""
    now = now or ctx.clock.now()
    events = list(events)
    result = RecordResult(received=len(events))
    with Session(ctx.engine) as session:
        stored = set(session.scalars(select(DeliveryEventRow.dedupe_key)
                                     .where(DeliveryEventRow.dedupe_key.in_({e.key for e in events}))))
        fresh: dict[str, DeliveryEvent] = {}
        for event in events:
            if event.key in stored or event.key in fresh:
                result.duplicates += 1
            else:
                fresh[event.key] = event
        messages = _messages(session, list(fresh.values()))
        customers = _customers(session, list(fresh.values()), messages)
        engine_events, direct = _engine_events(list(fresh.values()), messages, customers)
        resubscribed = _last_word_resubscribe(list(fresh.values()))
    if engine_events:
        result.engine_events = len(ingest_events(ctx, engine_events).accepted)
    with Session(ctx.engine) as session:
        for event in fresh.values():
            message_id = messages[event.key].id if event.key in messages else event.message_id
            row = {"dedupe_key": event.key, "message_id": message_id, "event_type": event.type.value,
                   "email_hash": email_hash(event.email) if event.email else None,
                   "occurred_at": event.occurred_at, "received_at": now, "payload": event.payload}
            if not insert_ignore(session, DeliveryEventRow, [row], ["dedupe_key"]):
                result.duplicates += 1          # a concurrent copy of the same batch won
                continue
            result.stored += 1
            result.by_type[event.type.value] += 1
            if event.key in direct and event.email:
                suppress(session, event.email, SUPPRESSING[event.type], source=f"sendgrid:{event.key}"[:200], now=now)
            if event.key in resubscribed and event.email:
                _lift_unsubscribe(session, event.email)
            if event.key not in messages:
                result.unmatched += 1
                continue
            message = session.get(Message, messages[event.key].id)
            if message is not None and _apply(message, event, now):
                result.settled += 1
        session.commit()
    return result


_CONSENT = (EventType.unsubscribed, EventType.group_unsubscribed, EventType.group_resubscribed)


def _last_word_resubscribe(events: list[DeliveryEvent]) -> set[str]:
    """Keys of group resubscribes that are an address's latest word on consent in this batch.

    SendGrid posts events in no guaranteed order: a resubscribe followed (by time) by an
    unsubscribe of the same address must leave the address unsubscribed.
    """
    last: dict[str, DeliveryEvent] = {}
    for event in sorted((e for e in events if e.type in _CONSENT and e.email), key=lambda e: e.occurred_at):
        last[event.email.strip().lower()] = event
    return {e.key for e in last.values() if e.type is EventType.group_resubscribed}


def _lift_unsubscribe(session: Session, email: str) -> None:
    """Marketing back on: only an unsubscribe is undone, never a bounce, complaint or erasure."""
    session.execute(delete(Suppression).where(Suppression.email_hash == email_hash(email),
                                              Suppression.reason == "unsubscribed",
                                              Suppression.scope == "marketing"))


def _apply(message: Message, event: DeliveryEvent, now: datetime) -> bool:
    """Advance the delivery state; settle an unsettled send. True when it settled one."""
    state = _STATE_OF.get(event.type, event.type.value)
    if event.type is EventType.opened and event.machine:
        state = "delivered"       # a privacy proxy fetched it: proof of delivery, not of reading
    if state and STATE_RANK.get(state, 0) > STATE_RANK.get(message.delivery_state or "", 0):
        message.delivery_state = state
    if message.status != "sent" and message.attempts > 0:
        for key, value in settle_values(message, event.provider_message_id, now).items():
            setattr(message, key, value)
        log.info("message %s settled as sent from a provider %s event", message.id, event.type.value)
        return True
    return False


def _messages(session: Session, events: list[DeliveryEvent]) -> dict[str, Message]:
    """Event key → our message: by our id, else by provider message id and recipient."""
    ids = {e.message_id for e in events if e.message_id}
    by_id = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))} if ids else {}
    found: dict[str, Message] = {}
    for event in events:
        if event.message_id and event.message_id in by_id:
            found[event.key] = by_id[event.message_id]
        elif event.provider_message_id and event.email:
            match = session.scalars(select(Message).where(
                Message.provider_id == event.provider_message_id,
                func.lower(Message.to_email) == event.email.strip().lower())).first()
            if match is not None:
                found[event.key] = match
    return found


def _customers(session: Session, events: list[DeliveryEvent],
               messages: dict[str, Message]) -> dict[str, list[CustomerRow]]:
    """Event key → the customers it concerns: the message's, else those with that address."""
    out: dict[str, list[CustomerRow]] = {}
    for event in events:
        if event.type not in ENGINE_TYPES:
            continue
        if event.key in messages:
            row = session.get(CustomerRow, messages[event.key].customer_id)
            out[event.key] = [row] if row is not None else []
        elif event.email:
            address = event.email.strip()
            out[event.key] = list(session.scalars(select(CustomerRow).where(
                CustomerRow.email.in_({address, address.lower()}))))
    return out


def _engine_events(events: list[DeliveryEvent], messages: dict[str, Message],
                   customers: dict[str, list[CustomerRow]]) -> tuple[list[Event], set[str]]:
    """Engine events to ingest, and the keys of suppressing events no engine event can carry."""
    out: list[Event] = []
    direct: set[str] = set()
    for event in events:
        etype = ENGINE_TYPES.get(event.type)
        if etype is None or (event.type is EventType.opened and event.machine):
            continue
        made = False
        for customer in customers.get(event.key, []):
            if not customer.email:
                continue                          # forgotten: nothing to attach it to
            same_address = not event.email or customer.email.strip().lower() == event.email.strip().lower()
            if event.type in SUPPRESSING and not same_address:
                continue                          # the customer moved on: suppress the old address only
            message = messages.get(event.key)
            engine = _engine_event(etype, event, message, customer)
            if engine is not None:
                out.append(engine)
                made = True
        if event.type in SUPPRESSING and not made:
            direct.add(event.key)
    return out, direct


def _engine_event(etype: str, event: DeliveryEvent, message: Message | None, customer: CustomerRow) -> Event | None:
    anchor = f"{message.id}:{etype}" if message else f"{event.key}:{customer.id}"
    data = {"message_id": message.id if message else event.message_id,
            "journey": message.journey_id if message else None, "step": message.step_id if message else None,
            "provider": "sendgrid", "delivery_event": event.type.value, "reason": event.reason,
            "url": event.url, "group_id": event.group_id}
    raw = {"id": f"sendgrid:{anchor}"[:200], "type": etype, "occurred_at": event.occurred_at.isoformat(),
           "customer": {"id": customer.id, "email": customer.email, "name": customer.name,
                        "timezone": customer.timezone, "locale": customer.locale},
           "data": {k: v for k, v in data.items() if v is not None}}
    try:
        return parse_event(raw)
    except InvalidEvent as exc:
        log.warning("cannot make %s for customer %s: %s", etype, customer.id, exc)
        return None


def delivery_counts(engine: Engine, *, since: datetime) -> dict[str, Counter]:
    """Per journey: of the messages created since ``since``, how many had each event type.

    A funnel (an opened message also counts as delivered), unlike ``Message.delivery_state``,
    which holds only the furthest state each message reached.
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    with Session(engine) as session:
        for journey_id, event_type, n in session.execute(
                select(Message.journey_id, DeliveryEventRow.event_type,
                       func.count(func.distinct(DeliveryEventRow.message_id)))
                .join(Message, Message.id == DeliveryEventRow.message_id)
                .where(Message.created_at >= since)
                .group_by(Message.journey_id, DeliveryEventRow.event_type)):
            counts[journey_id or "-"][event_type] += n
    return dict(counts)

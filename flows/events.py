"""Prefect events postsale emits, which deployment triggers and automations match.

Self-hosted Prefect has no webhooks: the postsale API takes the shop's events, stores them
(dedupe by id) and calls ``emit_postsale_event`` so that deployments can react. The event name
is ``postsale.<type>`` (``postsale.order.placed``); the resource is the customer
(``postsale.customer.<id>``), or the incident for the broadcast types (``postsale.incident.<id>``);
the payload is ``{"event": <the event as posted>, "event_id": <its id>}``. ``prefect.yaml``'s
triggers pass ``event.payload.event`` to the flow as a parameter.

The Prefect event id derives from the postsale event id, so a redelivered event keeps its
identity; Prefect's own dedupe is an in-memory cache, though, and never what makes ingest
once-only (the events table's primary key does that).
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect.events import emit_event
from prefect.events.schemas.events import Event as PrefectEvent
from prefect.settings import PREFECT_API_URL

from postsale.events import BROADCAST_TYPES

_EVENT_NS = uuid.UUID("2b0f6f55-61f3-4d8e-a9a8-3c1d2e7a9b40")


def resource_of(event: dict[str, Any]) -> dict[str, str]:
    """The Prefect resource a postsale event concerns: its customer, or its incident."""
    event_id = str(event.get("id", ""))
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    customer = event.get("customer") if isinstance(event.get("customer"), dict) else {}
    if event.get("type") in BROADCAST_TYPES:
        incident = str(data.get("incident_id") or event_id)
        return {"prefect.resource.id": f"postsale.incident.{incident}", "prefect.resource.name": incident}
    if customer.get("id"):
        return {"prefect.resource.id": f"postsale.customer.{customer['id']}",
                "prefect.resource.name": str(customer["id"])}
    return {"prefect.resource.id": f"postsale.event.{event_id}", "prefect.resource.name": event_id}


def describe(event: dict[str, Any]) -> dict[str, Any]:
    """The Prefect event for a postsale event: its name, resource, payload and id."""
    event_id = str(event["id"])
    return {"event": f"postsale.{event['type']}", "resource": resource_of(event),
            "payload": {"event": event, "event_id": event_id}, "id": uuid.uuid5(_EVENT_NS, event_id)}


def emit_postsale_event(event: dict[str, Any]) -> PrefectEvent | None:
    """Emit ``postsale.<type>`` for an event postsale took; None when no Prefect API is set.

    Without ``PREFECT_API_URL`` Prefect would start a temporary server to receive the event:
    an API process must never do that, so nothing is emitted then. Emission is buffered: a
    short-lived script calls ``flush()`` before it exits.
    """
    if not PREFECT_API_URL.value():
        return None
    return emit_event(**describe(event))


def emit_alert(journey_id: str, message: str) -> PrefectEvent | None:
    """Emit ``postsale.alert`` for an ``alert`` step, for an automation to notify a person.

    Called inside a flow run, Prefect relates the event to that run.
    """
    return emit_event(event="postsale.alert",
                      resource={"prefect.resource.id": f"postsale.journey.{journey_id}",
                                "prefect.resource.name": journey_id},
                      payload={"journey": journey_id, "message": message})


def flush() -> None:
    """Wait until emitted events have left this process (a short-lived script's last call)."""
    from prefect.events.worker import EventsWorker
    EventsWorker.drain_all()

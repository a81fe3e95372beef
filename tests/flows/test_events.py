"""``flows.events``: the Prefect events the postsale API emits for deployment triggers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.events import describe, emit_postsale_event, flush, resource_of
from tests.flows.support import eventually

SAMPLES = Path(__file__).resolve().parents[2] / "postsale/samples/events"


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def test_a_customer_event_concerns_its_customer_and_carries_itself():
    order = _sample("order.placed")
    described = describe(order)
    assert described["event"] == "postsale.order.placed"
    assert described["resource"]["prefect.resource.id"] == "postsale.customer.c-42"
    assert described["payload"] == {"event": order, "event_id": "sample-order-placed"}
    assert described["id"] == describe(dict(order))["id"]   # a redelivery keeps its identity


def test_an_incident_concerns_the_incident_even_with_a_customer_attached():
    assert resource_of(_sample("incident.declared"))["prefect.resource.id"] == "postsale.incident.inc-7"
    assert resource_of({"id": "e-1", "type": "incident.declared", "data": {}})["prefect.resource.id"] == \
        "postsale.incident.e-1"
    assert resource_of({"id": "e-2", "type": "custom.thing"})["prefect.resource.id"] == "postsale.event.e-2"


def test_without_a_prefect_api_nothing_is_emitted():
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert emit_postsale_event(_sample("order.placed")) is None


@pytest.mark.prefect
def test_the_emitted_event_reaches_prefect(prefect_server):
    from prefect import get_client

    order = _sample("order.placed")
    assert emit_postsale_event(order) is not None
    flush()

    def received() -> list[dict]:
        with get_client(sync_client=True) as client:
            response = client.request("POST", "/events/filter", json={
                "filter": {"event": {"name": ["postsale.order.placed"]}}, "limit": 10})
        return response.json()["events"]

    [event] = eventually(received)
    assert event["resource"]["prefect.resource.id"] == "postsale.customer.c-42"
    assert event["payload"] == {"event": order, "event_id": "sample-order-placed"}

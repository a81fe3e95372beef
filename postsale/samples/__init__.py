"""Sample data for ``postsale validate`` and ``postsale preview``.

One JSON event per type in ``events/`` (``events/order.placed.json``), written as a shop would
post it, so a template can be rendered before any real event exists. A type without a file
(a custom event) gets a generic event with empty ``data``: a template that needs more then
fails validation, which is the honest answer.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from postsale.events import Customer, Event, parse_event
from postsale.sandbox import Answers
from postsale.spec.model import Journey, QuestionType

EVENTS_DIR = Path(__file__).parent / "events"
SAMPLE_CUSTOMER = Customer(id="c-42", email="ada@example.com", name="Ada",
                           timezone="Europe/Rome", locale="en", attributes={"vip": True})


@lru_cache(maxsize=None)
def _load(event_type: str) -> Event | None:
    path = EVENTS_DIR / f"{event_type}.json"
    if "/" in event_type or not path.is_file():
        return None
    return parse_event(json.loads(path.read_text(encoding="utf-8")))


def has_sample(event_type: str) -> bool:
    return _load(event_type) is not None


def sample_event(event_type: str) -> Event:
    """The sample event of this type; a generic one (no data) for unknown types."""
    event = _load(event_type)
    if event is not None:
        return event
    return Event(id=f"sample-{event_type.replace('.', '-')}", type=event_type,
                 occurred_at=datetime.fromisoformat("2026-11-20T09:15:00+00:00"),
                 customer=SAMPLE_CUSTOMER, data={})


def sample_customer(locale: str | None = None) -> Customer:
    return replace(SAMPLE_CUSTOMER, locale=locale) if locale else SAMPLE_CUSTOMER


def sample_answers(journey: Journey) -> Answers:
    """A plausible answer to every question of the journey's surveys, so that templates that
    read ``answers.csat.score`` after a ``wait_for`` render in validation."""
    answers = Answers()
    for survey in journey.surveys.values():
        values: dict[str, Any] = {}
        for q in survey.questions:
            bounds = q.scale()
            if bounds is not None:
                values[q.id] = bounds[0]
            elif q.type is QuestionType.choice and q.choices:
                values[q.id] = q.choices[0]
            else:
                values[q.id] = "It arrived a day late."
        answers[survey.id] = values
    return answers


def journey_scope(journey: Journey) -> dict[str, Any]:
    return {"id": journey.id, "name": journey.name, "touchpoint": journey.touchpoint.value,
            "category": journey.category.value}


def sample_scope(journey: Journey, event: Event, customer: Customer | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """The names a template sees (SPEC.md §3), filled from a sample or given event.

    ``waited`` is None (a ``wait_for`` that timed out): the strictest case for a template.
    """
    customer = customer or event.customer or SAMPLE_CUSTOMER
    return {
        "customer": customer.scope(),
        "event": event.scope(),
        "data": event.data,
        "answers": sample_answers(journey),
        "waited": None,
        "journey": journey_scope(journey),
        "now": now or event.occurred_at,
    }

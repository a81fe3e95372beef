"""Event parsing (SPEC.md §2): what passes, what is rejected and the field it names.

The common case takes a short path (a plain, short, single-line string; a time zone seen
before): these pin that it accepts and rejects exactly what the full checks do.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from postsale.errors import InvalidEvent
from postsale.events import MAX_ID, parse_batch, parse_event, parse_timestamp


def raw(**over):
    event = {"id": "e-1", "type": "order.placed", "occurred_at": "2026-11-20T10:15:00+01:00",
             "customer": {"id": "c-1", "email": "ada@example.com", "name": "Ada", "timezone": "Europe/Rome"},
             "data": {"total": 10}}
    customer = over.pop("customer", {})
    event.update(over)
    event["customer"] = {**event["customer"], **customer}
    return event


def rejected(item) -> tuple[str, str]:
    with pytest.raises(InvalidEvent) as info:
        parse_event(item)
    return info.value.field, info.value.message


def test_a_good_event_is_parsed_to_utc():
    event = parse_event(raw())
    assert event.id == "e-1" and event.occurred_at == datetime(2026, 11, 20, 9, 15, tzinfo=timezone.utc)
    assert event.customer.scope() == {"id": "c-1", "email": "ada@example.com", "name": "Ada",
                                      "timezone": "Europe/Rome", "locale": None, "attributes": {}}


@pytest.mark.parametrize("where, value, field, message", [
    ("id", "a\nb", "id", "must not contain line breaks or NUL"),
    ("id", "a\rb", "id", "must not contain line breaks or NUL"),
    ("id", "x" * (MAX_ID + 1), "id", f"longer than {MAX_ID} characters"),
    ("id", "", "id", "required"),
    ("id", True, "id", "must be a string, not bool"),
    ("id", ["e-1"], "id", "must be a string, not list"),
    ("name", "Ada\x00", "customer.name", "must not contain line breaks or NUL"),
    ("name", "A" * 201, "customer.name", "longer than 200 characters"),
    ("email", "ada@example.com\r\nBcc: x@y.z", "customer.email", "must not contain line breaks or NUL"),
    ("timezone", "Mars/Olympus", "customer.timezone",
     "unknown time zone 'Mars/Olympus' (use an IANA name like Europe/Rome)"),
])
def test_bad_strings_are_rejected_naming_the_field(where, value, field, message):
    item = raw(customer={where: value}) if where in ("name", "email", "timezone") else raw(**{where: value})
    assert rejected(item) == (field, message)


def test_the_longest_id_passes_and_a_number_becomes_a_string():
    assert parse_event(raw(id="x" * MAX_ID)).id == "x" * MAX_ID
    assert parse_event(raw(id=42)).id == "42"


def test_a_time_zone_is_checked_every_time_until_it_is_known_good():
    assert rejected(raw(customer={"timezone": "Europe/Atlantis"}))[0] == "customer.timezone"
    assert rejected(raw(customer={"timezone": "Europe/Atlantis"}))[0] == "customer.timezone"
    for _ in range(2):
        assert parse_event(raw(customer={"timezone": "America/New_York"})).customer.timezone == "America/New_York"


@pytest.mark.parametrize("text, expected", [
    ("2026-11-20T10:15:00Z", datetime(2026, 11, 20, 10, 15, tzinfo=timezone.utc)),
    ("2026-11-20t10:15:00z", datetime(2026, 11, 20, 10, 15, tzinfo=timezone.utc)),
    ("2026-11-20 10:15+0100", datetime(2026, 11, 20, 9, 15, tzinfo=timezone.utc)),
    ("2026-11-20T10:15:00.250-05:00", datetime(2026, 11, 20, 15, 15, 0, 250000, tzinfo=timezone.utc)),
])
def test_timestamps_with_an_offset_are_read_as_utc(text, expected):
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["2026-11-20T10:15:00", "yesterday", "2026-13-45T99:99:99+99:99", ""])
def test_timestamps_without_an_offset_or_a_real_time_are_rejected(text):
    with pytest.raises(InvalidEvent) as info:
        parse_timestamp(text)
    assert info.value.field == "occurred_at"


def test_a_batch_keeps_the_index_of_every_item():
    good, bad = parse_batch([raw(id="a"), raw(id="b\n"), "junk", raw(id="c")])
    assert [(i, e.id) for i, e in good] == [(0, "a"), (3, "c")]
    assert [(r.index, r.event_id, r.field) for r in bad] == [(1, "b\n", "id"), (2, None, "event")]

"""JSON columns through orjson read back exactly what the standard library's ``json`` gave."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from models.json_codec import dumps, loads


def same(a, b) -> bool:
    """Equal, NaN included, and of the same types all the way down (1 is not 1.0 here)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


AWKWARD = [
    {"total": float("nan")}, [float("inf"), -math.inf], {"n": 2**64}, {"n": -(2**63) - 1}, [2**200],
    {"n": 2**64 - 1}, {"n": -(2**63)}, {1: "int key"}, {None: 1, True: 2, 1.5: 3}, "\ud800 lone",
    {"\udc00": "key"}, (1, 2), -0.0, 1e16, 5e-324, 1.7976931348623157e308, "é ü 😀 \x00 \u2028",
    {"nested": [{"a": None, "b": [None, {"c": float("nan")}]}]}, {"id": "12345678901234567890"},
    {"nullable": "null", "x": None}, {}, [], None, 0, True, "",
]


@pytest.mark.parametrize("value", AWKWARD, ids=repr)
def test_written_values_read_back_as_json_wrote_them(value):
    expected = json.loads(json.dumps(value))
    assert same(loads(dumps(value)), expected)
    assert same(json.loads(dumps(value)), expected)


@pytest.mark.parametrize("text", [
    "NaN", "[Infinity, -Infinity]", "1e400", "-1e400", "18446744073709551616", "-9223372036854775809",
    '"\\ud800"', '{"a": 1, "a": 2}', "-0", "-0.0", "9007199254740993.0", '"12345678901234567890123"',
    '{"\\ud83d\\ude00": 1}', " [1, 2.5, null, true] ",
])
def test_text_reads_as_json_reads_it(text):
    assert same(loads(text), json.loads(text))
    assert same(loads(text.encode()), json.loads(text.encode()))


@pytest.mark.parametrize("text", ["", "[1,2,]", '{"a" 1}', "\ufeff{}", '"\x01"'])
def test_what_json_refuses_is_still_refused(text):
    with pytest.raises(ValueError):
        loads(text)


@dataclass
class Point:
    x: int


@pytest.mark.parametrize("value", [datetime(2026, 1, 1, tzinfo=timezone.utc), date(2026, 1, 1), Point(1),
                                   {1, 2}, b"bytes"])
def test_what_json_refused_to_write_is_still_refused(value):
    with pytest.raises(TypeError):
        dumps({"v": value})


def test_the_text_is_compact_utf8():
    assert dumps({"a": [1, "ü"], "b": None}) == '{"a":[1,"ü"],"b":null}'
    assert dumps(uuid.UUID(int=1))  # json refused UUIDs; storing one now works (never the reverse)


_leaf = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
         | st.floats() | st.text())
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4),
                     max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_any_value_reads_back_as_json_would_read_it(value):
    assert same(loads(dumps(value)), json.loads(json.dumps(value)))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789.eE-+ntrufalsNIiy\\u d8', max_size=30))
def test_any_text_reads_as_json_reads_it(text):
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            loads(text)
        return
    assert same(loads(text), expected)


def test_the_database_gives_back_what_it_was_given(ctx):
    """SQLite hands the codec text, psycopg bytes: both read back the values written.

    (No NaN here: PostgreSQL's ``json`` type refuses it, as it always did.)"""
    from sqlmodel import Session

    from models import Customer
    attributes = {"trigger": {"data": {"total": 12.5, "big": 2**70, "name": "Zoë"}}, "answers": {},
                  "waited": None, "odd": {"1": [1.5, -0.0, "\ud83d\ude00", 2**63 - 1]}, 2: "int key"}
    with Session(ctx.engine) as session:
        session.add(Customer(id="c1", email="c1@example.com", attributes=attributes))
        session.commit()
    with Session(ctx.engine) as session:
        stored = session.scalar(select(Customer.attributes).where(Customer.id == "c1"))
    assert same(stored, json.loads(json.dumps(attributes)))

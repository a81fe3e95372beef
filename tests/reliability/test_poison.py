"""One customer's hostile data must affect only that customer (SPEC §9.5), found by the
expression property tests (``test_hostile_sandbox.py``) and followed through to the store.

A journey condition that meets data of an unexpected type (``data.tags|reverse`` with a
number) raised Jinja's ``FilterArgumentError``, which ``postsale.sandbox.evaluate`` used not
to turn into an ``ExpressionError``: at ingest it failed the whole batch (the shop's retry
failed again: a poison batch), in dispatch the whole batch of customers (every tick retried
the same batch: nobody behind the poison customer advanced). A condition Jinja folds at
compile time (``0.__class__``) raised out of the journey loader instead of a Problem. These
tests keep it that way: the bad customer's step is skipped, the others go on.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlmodel import Session, select

from models import Message
from postsale.clock import VirtualClock
from postsale.settings import DEV_SECRET
from postsale.spec.journeys import parse_journey
from postsale.spec.model import Policy
from postsale.store.context import Context
from postsale.store.dispatch import dispatch
from postsale.store.ingest import ingest_events
from tests.pg.scenario import JOURNEYS, TEMPLATES
from tests.store.events import event

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc)



def _context(tmp_path: Path, poison: str) -> Context:
    journeys = tmp_path / "journeys"
    shutil.copytree(JOURNEYS, journeys)
    (journeys / "poison.yaml").write_text(poison)
    return Context.build(database_url=f"sqlite:///{tmp_path}/poison.db", journeys=journeys, templates=TEMPLATES,
                         secret=DEV_SECRET, clock=VirtualClock(NOW))


ABSENT = object()


def _orders(tags_of_the_second) -> list:
    out = []
    for i in range(3):
        tags = {"tags": ["x"]} if i != 1 else {} if tags_of_the_second is ABSENT else {"tags": tags_of_the_second}
        out.append(event(f"o-{i}", "order.placed", NOW, {"id": f"c{i}", "email": f"c{i}@example.com",
                                                         "timezone": "Europe/Rome"},
                         order_id=f"o{i}", total=10.0, **tags))
    return out


DATA = [pytest.param(5, id="number"), pytest.param(None, id="null"),
        pytest.param(ABSENT, id="absent"), pytest.param("x", id="string")]


TRIGGER = """journey: poison
name: A condition that trusts the data
touchpoint: immediate_post_sale
category: transactional
trigger:
  event: order.placed
  if: "data.tags|reverse|first == 'x'"
steps:
  - send: shipped
"""

STEP = TRIGGER.replace("""  if: "data.tags|reverse|first == 'x'"
steps:
  - send: shipped
""", """steps:
  - send: shipped
    if: "data.tags|reverse|first == 'x'"
""")


def _shipped_to(ctx: Context) -> set[str]:
    with Session(ctx.engine) as session:
        return set(session.scalars(select(Message.customer_id).where(Message.journey_id == "poison")))


@pytest.mark.parametrize("tags", DATA)
def test_a_trigger_condition_that_fails_on_one_event_takes_the_rest_of_the_batch(tmp_path, tags):
    ctx = _context(tmp_path, TRIGGER)
    try:
        result = ingest_events(ctx, _orders(tags))
        assert sorted(result.accepted) == ["o-0", "o-1", "o-2"]
        dispatch(ctx)
        assert {"c0", "c2"} <= _shipped_to(ctx)
    finally:
        ctx.engine.dispose()


@pytest.mark.parametrize("tags", DATA)
def test_a_step_condition_that_fails_for_one_customer_does_not_stop_the_others(tmp_path, tags):
    ctx = _context(tmp_path, STEP)
    try:
        ingest_events(ctx, _orders(tags))
        dispatch(ctx)
        assert {"c0", "c2"} <= _shipped_to(ctx)
    finally:
        ctx.engine.dispose()


@pytest.mark.parametrize("condition", [
    "customer if 0.__class__ else data", "customer if 0.__mro__ else data",
    "data.x ==", "{{ data }}", "data.x | nofilter",
])
def test_a_hostile_condition_is_a_problem_of_its_journey_not_a_crash(condition):
    text = TRIGGER.replace("data.tags|reverse|first == 'x'", condition)
    journey, problems = parse_journey(text, "poison.yaml", policy=Policy())
    assert journey is None and any(p.is_error for p in problems), problems

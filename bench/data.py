"""Seeded, realistic data for the benchmarks, bulk-loaded with Core ``executemany`` inserts.

Loading a million customers through ``ingest_events`` would take longer than the benchmark
itself, so the rows are written as ingest would have left them: a customer (12 time zones,
Italian and English locales, VIP flags), the events that started their runs, one purchase row
per SKU, a run of a *shipped* journey at the step where it is due, and the emails already sent
earlier in that run (what caps and ``min_gap`` read).

Due runs, at ``NOW`` (a Monday, 14:00 UTC: night in Tokyo, Sydney and Los Angeles, so about a
quarter of the marketing mail is held for quiet hours, as it would be):

    65%  post-purchase at its first step: thank_you (it locale → thank_you.it)
    15%  post-purchase after its 2-day wait: the kitchen branch, thank_you sent 2 days ago
    10%  care-check-in after its 3-day wait: the csat survey (six signed links)
     5%  support-ack at its first step (transactional)
     5%  issue-resolution at its first step (transactional, ticket open)

Customers that are *not* due (the scale scenario's other 99%) have finished or are waiting:
60% a completed post-purchase run, 40% a care-check-in waiting for the survey answer until
later this week; each has one email in their history. Historical messages keep a short body:
their content is never read again, only their metadata.
"""

from __future__ import annotations

import random
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from models import Customer, Event, Message, Purchase, Run
from postsale.demo_data import PEOPLE, PRODUCTS
from postsale.engine import message_id_for, program_for
from postsale.engine.types import RunState, RunStatus
from postsale.spec.model import Journey
from postsale.store.runs import context_of

UTC = timezone.utc
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
_NS = uuid.UUID("0b6c1f0e-8f55-4a4e-9a3e-2d1b9c6e7a11")
CHUNK = 5_000

# (kind, share of due customers)
DUE_MIX = (("thank-you", 0.65), ("first-use", 0.15), ("survey", 0.10), ("support", 0.05),
           ("ticket", 0.05))
SURNAMES = ("Rossi", "Smith", "Tanaka", "Virtanen", "Brown", "Bianchi", "Garcia", "Sharma", "Müller",
            "O'Brien", "Nguyen", "Costa")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Dataset:
    """What was loaded: ``due`` customers have a run due at ``NOW``; ``total`` customers in all."""
    total: int
    due: int
    tag: str
    due_ids: tuple[str, ...] = ()


def _kind(rng: random.Random) -> str:
    x, acc = rng.random(), 0.0
    for kind, share in DUE_MIX:
        acc += share
        if x < acc:
            return kind
    return DUE_MIX[-1][0]


def customer_row(i: int, tag: str, rng: random.Random) -> dict[str, Any]:
    # A hash, not ``i % 12``: due customers are every n-th id, and must not all share a zone.
    name, tz, locale = PEOPLE[zlib.crc32(b"%d" % i) % len(PEOPLE)]
    return {"id": f"{tag}-{i:07d}", "email": f"{name.lower()}.{tag}.{i}@example.com",
            "name": f"{name} {SURNAMES[(i // len(PEOPLE)) % len(SURNAMES)]}", "timezone": tz,
            "locale": locale, "attributes": {"vip": rng.random() < 0.2, "orders": rng.randint(1, 9)},
            "open_tickets": 0, "created_at": NOW - timedelta(days=40), "updated_at": NOW - timedelta(days=1)}


def order_data(i: int, tag: str, rng: random.Random) -> dict[str, Any]:
    items = [dict(p, quantity=rng.choice((1, 1, 2))) for p in rng.sample(PRODUCTS, rng.choice((1, 2, 3)))]
    total = round(sum(it["price"] * it["quantity"] for it in items), 2)
    return {"order_id": f"{tag}-{100000 + i}", "total": total, "currency": "EUR", "items": items}


def _scope(eid: str, etype: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": eid, "type": etype, "occurred_at": at.isoformat(), "data": data}


def step_index(journey: Journey, step_id: str) -> int:
    """Where ``step_id`` sits in the journey's compiled program (the run's pointer)."""
    program = program_for(journey)
    for index in range(len(program)):
        step = program.step_at(index)
        if step is not None and step.id == step_id:
            return index
    raise LookupError(f"journey {journey.id} has no step {step_id!r}: the shipped journeys changed")


class _Rows:
    def __init__(self) -> None:
        self.customers: list[dict] = []
        self.events: list[dict] = []
        self.purchases: list[dict] = []
        self.runs: list[dict] = []
        self.messages: list[dict] = []

    def __len__(self) -> int:
        return len(self.customers)

    def flush(self, engine: Engine) -> None:
        with engine.begin() as conn:
            for table, rows in ((Customer, self.customers), (Event, self.events), (Purchase, self.purchases),
                                (Run, self.runs), (Message, self.messages)):
                if rows:
                    conn.execute(insert(table.__table__), rows)
        self.__init__()


class Loader:
    """Writes customers and their runs for the shipped journeys (``ctx.catalog``)."""

    def __init__(self, ctx: Any, *, tag: str = "b", seed: int = 8) -> None:
        self.ctx = ctx
        self.tag = tag
        self.seed = seed
        journeys = ctx.catalog.journeys
        self.j = {k: journeys[k] for k in ("post-purchase", "care-check-in", "support-ack", "issue-resolution")}
        self.version = {k: ctx.versions.current_id(k) for k in self.j}
        self.bought: dict | None = None
        self.index = {"kitchen": step_index(self.j["post-purchase"], "has-kitchen-item"),
                      "survey": step_index(self.j["care-check-in"], "csat")}

    def load(self, *, total: int, due: int, progress: Progress | None = None, start: int = 0,
             bought: str | None = None) -> Dataset:
        """``total`` customers (``start``.. in id order), ``due`` of them due at NOW, spread evenly
        through the id range; with ``bought``, every order includes that SKU."""
        rng = random.Random(self.seed + start)
        self.bought = next((p for p in PRODUCTS if p["sku"] == bought), None) if bought else None
        rows = _Rows()
        stride = max(1, total // max(1, due))
        due_ids: list[str] = []
        done = 0
        for n in range(total):
            i = start + n
            is_due = len(due_ids) < due and n % stride == 0
            customer = customer_row(i, self.tag, rng)
            rows.customers.append(customer)
            if is_due:
                due_ids.append(customer["id"])
                self._due(rows, i, customer, rng)
            else:
                self._idle(rows, i, customer, rng)
            if len(rows) >= CHUNK:
                done += len(rows)
                rows.flush(self.ctx.engine)
                if progress:
                    progress(done, total)
        done += len(rows)
        rows.flush(self.ctx.engine)
        if progress:
            progress(done, total)
        return Dataset(total=total, due=len(due_ids), tag=self.tag, due_ids=tuple(due_ids))

    # ------------------------------------------------------------ one customer

    def _event(self, rows: _Rows, eid: str, etype: str, at: datetime, customer: dict, data: dict) -> dict:
        rows.events.append({"id": eid, "type": etype, "occurred_at": at, "received_at": at,
                            "customer_id": customer["id"], "data": data,
                            "customer_snapshot": {k: customer[k] for k in ("id", "email", "name", "timezone",
                                                                           "locale", "attributes")}})
        return _scope(eid, etype, at, data)

    def _order(self, rows: _Rows, i: int, customer: dict, at: datetime, rng: random.Random) -> dict:
        data = order_data(i, self.tag, rng)
        if self.bought and all(it["sku"] != self.bought["sku"] for it in data["items"]):
            data["items"].append(dict(self.bought, quantity=1))
            data["total"] = round(data["total"] + self.bought["price"], 2)
        eid = f"{self.tag}-o{i}"
        for sku in sorted({it["sku"] for it in data["items"]}):
            rows.purchases.append({"event_id": eid, "customer_id": customer["id"], "sku": sku, "purchased_at": at})
        return self._event(rows, eid, "order.placed", at, customer, data)

    def _run(self, rows: _Rows, journey: str, customer: dict, trigger: dict, *, entered: datetime,
             step_index: int, status: RunStatus, next_run_at: datetime | None, step_id: str | None,
             waiting_for: str | None = None, wait_until: datetime | None = None) -> str:
        j = self.j[journey]
        run_id = uuid.uuid5(_NS, f"{trigger['id']}/{journey}/{customer['id']}").hex
        state = RunState(run_id=run_id, journey_id=journey, customer_id=customer["id"], entered_at=entered,
                         step_index=step_index, status=status, next_run_at=next_run_at, trigger=trigger,
                         wait_until=wait_until)
        finished = status.finished
        rows.runs.append({
            "id": run_id, "customer_id": customer["id"], "journey_id": journey, "version_id": self.version[journey],
            "touchpoint": j.touchpoint.value, "category": j.category.value, "status": status.value,
            "step_index": step_index, "step_id": step_id, "next_run_at": None if finished else next_run_at,
            "entered_at": entered, "ended_at": entered + timedelta(days=3) if finished else None,
            "exit_reason": "completed" if finished else None, "waiting_for": waiting_for,
            "trigger_event_id": trigger["id"], "context": context_of(state), "updated_at": entered})
        return run_id

    def _sent(self, rows: _Rows, run_id: str, journey: str, step_id: str, template: str, customer: dict,
              at: datetime, *, survey: str | None = None) -> None:
        j = self.j[journey]
        rows.messages.append({
            "id": message_id_for(run_id, step_id), "run_id": run_id, "step_id": step_id,
            "customer_id": customer["id"], "journey_id": journey, "touchpoint": j.touchpoint.value,
            "category": "marketing" if survey else j.category.value, "is_survey": survey is not None,
            "survey_id": survey, "template": template, "to_email": customer["email"], "to_name": customer["name"],
            "from_email": "Acme <hello@acme.example>", "reply_to": "care@acme.example",
            "subject": "(sent earlier)", "html": "<p>(sent earlier)</p>", "text_body": "(sent earlier)\n",
            "headers": {}, "status": "sent", "provider_id": f"hist-{run_id[:12]}", "attempts": 1,
            "created_at": at, "sending_at": at, "sent_at": at})

    def _due(self, rows: _Rows, i: int, customer: dict, rng: random.Random) -> None:
        kind = _kind(rng)
        due_at = NOW - timedelta(minutes=rng.uniform(0, 30))
        if kind == "thank-you":
            trigger = self._order(rows, i, customer, due_at, rng)
            self._run(rows, "post-purchase", customer, trigger, entered=due_at, step_index=0,
                      status=RunStatus.active, next_run_at=due_at, step_id=None)
        elif kind == "first-use":
            ordered = due_at - timedelta(days=2, hours=rng.uniform(0, 4))
            trigger = self._order(rows, i, customer, ordered, rng)
            run_id = self._run(rows, "post-purchase", customer, trigger, entered=ordered,
                               step_index=self.index["kitchen"], status=RunStatus.active, next_run_at=due_at,
                               step_id="has-kitchen-item")
            self._sent(rows, run_id, "post-purchase", "thank_you", "thank_you", customer, ordered)
        elif kind == "survey":
            ordered = due_at - timedelta(days=7)
            self._order(rows, i, customer, ordered, rng)
            delivered = due_at - timedelta(days=3, hours=rng.uniform(0, 4))
            data = {"order_id": f"{self.tag}-{100000 + i}", "items": order_data(i, self.tag, rng)["items"]}
            trigger = self._event(rows, f"{self.tag}-d{i}", "order.delivered", delivered, customer, data)
            self._run(rows, "care-check-in", customer, trigger, entered=delivered, step_index=self.index["survey"],
                      status=RunStatus.active, next_run_at=due_at, step_id="csat")
        elif kind == "support":
            data = {"request_id": f"R-{i}", "subject": "How do I descale it?", "order_id": f"{self.tag}-{100000 + i}"}
            trigger = self._event(rows, f"{self.tag}-h{i}", "support.requested", due_at, customer, data)
            self._run(rows, "support-ack", customer, trigger, entered=due_at, step_index=0,
                      status=RunStatus.active, next_run_at=due_at, step_id=None)
        else:
            customer["open_tickets"] = 1
            data = {"ticket_id": f"T-{i}", "subject": "Lid does not close", "order_id": f"{self.tag}-{100000 + i}"}
            trigger = self._event(rows, f"{self.tag}-t{i}", "ticket.opened", due_at, customer, data)
            self._run(rows, "issue-resolution", customer, trigger, entered=due_at, step_index=0,
                      status=RunStatus.active, next_run_at=due_at, step_id=None)

    def _idle(self, rows: _Rows, i: int, customer: dict, rng: random.Random) -> None:
        ordered = NOW - timedelta(days=rng.uniform(6, 30))
        trigger = self._order(rows, i, customer, ordered, rng)
        if rng.random() < 0.6:
            run_id = self._run(rows, "post-purchase", customer, trigger, entered=ordered,
                               step_index=len(program_for(self.j["post-purchase"])), status=RunStatus.completed,
                               next_run_at=None, step_id=None)
            self._sent(rows, run_id, "post-purchase", "thank_you", "thank_you", customer, ordered)
        else:
            delivered = NOW - timedelta(days=rng.uniform(3, 5))
            data = {"order_id": trigger["data"]["order_id"], "items": trigger["data"]["items"]}
            wake = self._event(rows, f"{self.tag}-d{i}", "order.delivered", delivered, customer, data)
            until = NOW + timedelta(days=rng.uniform(1, 5))
            run_id = self._run(rows, "care-check-in", customer, wake, entered=delivered,
                               step_index=self.index["survey"] + 1, status=RunStatus.waiting, next_run_at=until,
                               step_id=None,
                               waiting_for="survey.answered", wait_until=until)
            self._sent(rows, run_id, "care-check-in", "csat", "survey_csat", customer, NOW - timedelta(hours=20),
                       survey="csat")


def raw_events(*, customers: int, tag: str, seed: int = 7, start: datetime = NOW - timedelta(days=3)) -> list[dict]:
    """Raw shop events as they are posted (``postsale.demo_data``: orders, shipping, delivery,
    support, tickets, refunds and one incident), about 3.5 events a customer."""
    from postsale.demo_data import demo_events
    return demo_events(start=start, customers=customers, tag=tag, seed=seed)


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]

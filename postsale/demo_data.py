"""Sample customers and events for `postsale demo` and the benchmarks (seeded, realistic).

Customers live in many time zones, buy several items, get deliveries, ask for help (some get an
answer, some don't), open a ticket, and a product incident hits one SKU. Survey answers are not
scripted: ``survey_reactions`` answers the survey emails actually sent, as customers would.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any, Iterable

from postsale.events import Event, parse_event

PRODUCTS = [
    {"sku": "KETTLE-1", "name": "Steel kettle", "category": "kitchen", "price": 129.0},
    {"sku": "GRINDER-2", "name": "Burr coffee grinder", "category": "kitchen", "price": 89.0},
    {"sku": "MUG-5", "name": "Stoneware mug", "category": "kitchen", "price": 18.0},
    {"sku": "LAMP-3", "name": "Reading lamp", "category": "home", "price": 64.0},
    {"sku": "BACKPACK-4", "name": "Trail backpack", "category": "outdoor", "price": 110.0},
]
PEOPLE = [
    ("Ada", "Europe/Rome", "it"), ("Grace", "America/New_York", "en"), ("Alan", "Europe/London", "en"),
    ("Yuki", "Asia/Tokyo", "en"), ("Linus", "Europe/Helsinki", "en"), ("Marta", "Europe/Rome", "it"),
    ("Olivia", "Australia/Sydney", "en"), ("Diego", "America/Los_Angeles", "en"),
    ("Chiara", "Europe/Rome", "it"), ("Sam", "America/Chicago", "en"), ("Priya", "Asia/Kolkata", "en"),
    ("Tom", "Europe/Berlin", "en"),
]


def _iso(at: datetime) -> str:
    return at.replace(microsecond=0).isoformat()


def _customer(index: int, tag: str, rng: random.Random) -> dict[str, Any]:
    name, tz, locale = PEOPLE[index % len(PEOPLE)]
    return {"id": f"{tag}-c{index:03d}", "email": f"{name.lower()}.{tag}.{index}@example.com", "name": name,
            "timezone": tz, "locale": locale, "attributes": {"vip": rng.random() < 0.2}}


def _event(eid: str, etype: str, at: datetime, customer: dict | None, data: dict) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": _iso(at), "data": data}
    if customer is not None:
        raw["customer"] = customer
    return raw


def demo_events(*, start: datetime, customers: int = 24, tag: str = "demo", seed: int = 7) -> list[dict[str, Any]]:
    """Raw events (as a shop would post them) for ``customers`` people from ``start`` on."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    incident_sku = "GRINDER-2"
    for i in range(customers):
        person = _customer(i, tag, rng)
        t0 = start + timedelta(hours=rng.uniform(0, 48))
        if i % 6 == 5:  # a prospect who asks first, and one who abandons a cart and never buys
            out.append(_event(f"{tag}-q{i}", "question.asked", t0, person,
                              {"question": "Does the kettle work on induction?", "product": PRODUCTS[0]}))
            t0 += timedelta(hours=rng.uniform(20, 40))
        if i % 8 == 7:
            out.append(_event(f"{tag}-cart{i}", "cart.abandoned", t0, person,
                              {"items": [dict(PRODUCTS[3], quantity=1)], "total": PRODUCTS[3]["price"],
                               "currency": "EUR"}))
            continue
        items = [dict(p, quantity=rng.choice([1, 1, 2])) for p in rng.sample(PRODUCTS, rng.choice([1, 2, 3]))]
        if i % 4 == 0 and not any(it["sku"] == incident_sku for it in items):
            items.append(dict(PRODUCTS[1], quantity=1))
        total = round(sum(it["price"] * it["quantity"] for it in items), 2)
        order = {"order_id": f"{tag}-{1000 + i}", "total": total, "currency": "EUR", "items": items}
        out.append(_event(f"{tag}-o{i}", "order.placed", t0, person, order))
        out.append(_event(f"{tag}-s{i}", "order.shipped", t0 + timedelta(hours=rng.uniform(18, 30)), person,
                          {"order_id": order["order_id"], "carrier": "DHL", "tracking": f"JD{rng.randint(10**9, 10**10)}"}))
        delivered = t0 + timedelta(days=rng.uniform(2.5, 4))
        out.append(_event(f"{tag}-d{i}", "order.delivered", delivered, person,
                          {"order_id": order["order_id"], "items": items}))
        if i % 5 == 2:  # a question after delivery; every other one gets a reply in hours
            asked = delivered + timedelta(days=rng.uniform(1, 3))
            out.append(_event(f"{tag}-help{i}", "support.requested", asked, person,
                              {"request_id": f"R-{i}", "subject": "How do I descale it?", "order_id": order["order_id"]}))
            if i % 10 == 2:
                out.append(_event(f"{tag}-reply{i}", "support.replied", asked + timedelta(hours=rng.uniform(1, 6)),
                                  person, {"request_id": f"R-{i}", "agent": "Giulia"}))
        if i % 7 == 3:
            opened = delivered + timedelta(days=1)
            out.append(_event(f"{tag}-t{i}", "ticket.opened", opened, person,
                              {"ticket_id": f"T-{i}", "subject": "Lid does not close", "order_id": order["order_id"]}))
            out.append(_event(f"{tag}-tr{i}", "ticket.resolved", opened + timedelta(days=2), person,
                              {"ticket_id": f"T-{i}", "resolution": "Replacement lid shipped"}))
        if i % 11 == 10:
            out.append(_event(f"{tag}-r{i}", "order.refunded", t0 + timedelta(days=1), person,
                              {"order_id": order["order_id"], "amount": total}))
    out.append(_event(f"{tag}-incident", "incident.declared", start + timedelta(days=5), None, {
        "incident_id": f"{tag}-INC-1", "skus": [incident_sku], "product": "Burr coffee grinder",
        "title": "the burr can loosen",
        "description": "On some grinders from the October batch, the burr can loosen after a few weeks of use.",
        "action": "We are posting every owner a fixing kit this week, at our cost.",
        "advice": "Until it arrives, tighten the top ring by hand before each use.",
        "purchased_after": _iso(start - timedelta(days=30))}))
    return out


def demo_parsed(**kwargs: Any) -> list[Event]:
    return [parse_event(raw) for raw in demo_events(**kwargs)]


def survey_answer(*, tag: str, message: Any, at: datetime, rng: random.Random,
                  customer: dict[str, Any]) -> Event | None:
    """How a customer answers a survey email: most answer, most are happy, a few are not."""
    if rng.random() > 0.75:
        return None
    score = rng.choices([1, 2, 3, 4, 5], weights=[1, 1, 1, 3, 4])[0]
    answers: dict[str, Any] = {"score": score}
    if score <= 2:
        answers["comment"] = "It arrived scratched."
    return parse_event(_event(f"{tag}-ans-{message.id}", "survey.answered", at, customer, {
        "survey": message.survey_id, "journey": message.journey_id, "message_id": message.id,
        "answers": answers}))


def chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]

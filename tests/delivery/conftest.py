"""Delivery tests: the real sendgrid client against tests/fakes_sendgrid.py, SMTP against
aiosmtpd, a real SQLite file per test; everything on loopback."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models import Customer, Message
from postsale.clock import VirtualClock
from postsale.delivery.sendgrid import SendGridTransport
from postsale.settings import DEV_SECRET
from postsale.store.context import Context
from tests.fakes_sendgrid import FakeSendGrid
from tests.store.conftest import FIXTURE, T0

API_KEY = "SG.test-key"
LIST_UNSUBSCRIBE = "<mailto:unsubscribe@acme.example?subject=unsubscribe>, <https://mail.acme.example/u/tok>"


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[Callable[..., Context]]:
    made: list[Context] = []

    def build(*, start: datetime = T0, url: str | None = None) -> Context:
        ctx = Context.build(database_url=url or f"sqlite:///{tmp_path}/delivery-{len(made)}.db",
                            journeys=FIXTURE / "journeys", templates=FIXTURE / "templates",
                            secret=DEV_SECRET, clock=VirtualClock(start))
        made.append(ctx)
        return ctx

    yield build
    for ctx in made:
        ctx.engine.dispose()


@pytest.fixture
def ctx(make_ctx) -> Context:
    return make_ctx()


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(api_key=API_KEY, hang_seconds=10) as server:
        yield server


@pytest.fixture
def sendgrid(fake) -> Iterator[SendGridTransport]:
    transport = SendGridTransport(API_KEY, host=fake.url, timeout=1.0, concurrency=4, unsubscribe_group=77)
    yield transport
    transport.close()


def queue_messages(ctx: Context, n: int, *, prefix: str = "m", identical: bool = False, category: str = "marketing",
                   to: Callable[[int], str] | None = None, journey: str = "post-purchase",
                   created: datetime | None = None) -> list[str]:
    """Queue ``n`` outbox rows directly (customers c-0..), as dispatch would have written them."""
    created = created or ctx.clock.now()
    ids = []
    with Session(ctx.engine) as session:
        for i in range(n):
            cid = f"c-{prefix}{i}"
            address = to(i) if to else f"{cid}@example.com"
            if session.get(Customer, cid) is None:
                session.add(Customer(id=cid, email=address, name=f"Zoë {i}", timezone="Europe/Rome",
                                     created_at=created, updated_at=created))
            mid = f"{prefix}{i:05d}"
            body = "Our kettle recall: bring it back" if identical else f"Hello {i}, thanks for your order"
            session.add(Message(
                id=mid, run_id=f"run-{mid}", step_id="thank_you", customer_id=cid, journey_id=journey,
                touchpoint="immediate_post_sale", category=category, template="thank_you", to_email=address,
                to_name=f"Zoë {i}", from_email="Acme <hello@acme.example>", reply_to="care@acme.example",
                subject="Grazie per l'ordine ☕" if not identical else "Kettle recall",
                html=f"<p>{body}</p>", text_body=body,
                headers={"List-Unsubscribe": LIST_UNSUBSCRIBE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                status="queued", created_at=created + timedelta(microseconds=i)))
            ids.append(mid)
        session.commit()
    return ids


def rows(ctx: Context) -> dict[str, Message]:
    with Session(ctx.engine) as session:
        return {m.id: m for m in session.scalars(select(Message).order_by(Message.id))}

"""The API suite drives a real uvicorn on a free loopback port, in a thread, with httpx.

One server per test module (``live``): a temporary SQLite file, the fixture journeys and
templates beside this file, a ``VirtualClock`` the tests move (ten minutes, two days: no
sleeping), a ``MemoryTransport`` whose ``sent`` list is the mail, and the real ``Dispatcher``
with its immediate-dispatch worker but no interval tick: tests call ``live.tick()`` where the
scheduler would have.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import uvicorn
from sqlmodel import Session, select

from models import Timeline
from postsale.api.app import create_app
from postsale.api.deps import Services
from postsale.clock import VirtualClock
from postsale.delivery.base import OutgoingEmail
from postsale.delivery.memory import MemoryTransport
from postsale.serve import Dispatcher
from postsale.settings import DEV_SECRET, load_settings
from postsale.store.context import Context

FIXTURE = Path(__file__).parent / "fixture"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)     # a Monday morning
TOKEN = "test-api-token-5b1f0c"
SHOPIFY_SECRET = "shpss_test_0123456789abcdef"
STRIPE_SECRET = "whsec_test_0123456789abcdef"
MAX_BODY = 64 * 1024
PUBLIC = "https://mail.acme.example"


@dataclass
class Live:
    url: str
    ctx: Context
    clock: VirtualClock
    transport: MemoryTransport
    dispatcher: Dispatcher
    services: Services
    client: httpx.Client

    # ------------------------------------------------------------ requests

    def post_events(self, body: Any, *, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kwargs.pop("headers", {}))
        if isinstance(body, (str, bytes)):
            return self.client.post("/events", content=body, headers=headers, **kwargs)
        return self.client.post("/events", json=body, headers=headers, **kwargs)

    def settle(self) -> None:
        """Wait for the immediate dispatch the last request triggered."""
        assert self.dispatcher.wait_idle(10), "the triggered dispatch did not finish"

    def tick(self) -> None:
        """What the scheduler does every few seconds."""
        self.settle()
        self.dispatcher.tick()

    # ------------------------------------------------------------ what happened

    def mail_to(self, email: str) -> list[OutgoingEmail]:
        return [m for m in self.transport.sent if m.to_email == email]

    def subjects(self, email: str) -> list[str]:
        return [m.subject for m in self.mail_to(email)]

    def timeline(self, customer_id: str) -> list[Timeline]:
        with Session(self.ctx.engine) as session:
            return list(session.exec(select(Timeline).where(Timeline.customer_id == customer_id)
                                     .order_by(Timeline.id)))


def event(eid: str, etype: str, cid: str, at: datetime | None = None, *, email: str | None = None,
          **data: Any) -> dict[str, Any]:
    return {"id": eid, "type": etype, "occurred_at": (at or T0).isoformat(),
            "customer": {"id": cid, "email": email or f"{cid}@example.com", "name": cid.upper(),
                         "timezone": "Europe/Rome"},
            "data": data}


def order(eid: str, cid: str, at: datetime | None = None, **kwargs: Any) -> dict[str, Any]:
    return event(eid, "order.placed", cid, at, order_id=eid, total=49.0, currency="EUR",
                 items=[{"sku": "MUG-1", "name": "Mug", "category": "kitchen", "quantity": 1, "price": 49.0}],
                 **kwargs)


def link_path(url: str) -> str:
    assert url.startswith(PUBLIC), url
    return url[len(PUBLIC):]


def unsubscribe_path(mail: OutgoingEmail) -> str:
    url = re.search(r"<(https://[^>]+)>", mail.headers["List-Unsubscribe"]).group(1)
    return link_path(url)


def survey_path(mail: OutgoingEmail, answer: int) -> str:
    match = re.search(rf'href="({re.escape(PUBLIC)}/s/[^"?]+)\?a={answer}"', mail.html)
    assert match, "no survey link for that answer in the email"
    return link_path(match.group(1)) + f"?a={answer}"


def start_server(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("api")
    settings = load_settings(database_url=f"sqlite:///{folder}/api.db", journeys=FIXTURE / "journeys",
                             templates=FIXTURE / "templates", transport="memory", outbox=folder / "outbox",
                             secret=DEV_SECRET, api_token=TOKEN, shopify_secret=SHOPIFY_SECRET,
                             stripe_secret=STRIPE_SECRET)
    clock = VirtualClock(T0)
    ctx = Context.from_settings(settings, clock=clock)
    assert not [p for p in ctx.catalog.problems if p.is_error], ctx.catalog.problems
    transport = MemoryTransport()
    dispatcher = Dispatcher(ctx, transport, interval_seconds=3600)
    dispatcher.start(schedule=False)
    app = create_app(settings, ctx=ctx, dispatcher=dispatcher, max_body_bytes=MAX_BODY, emit_prefect=False)
    server, thread, url = start_server(app)
    with httpx.Client(base_url=url, timeout=20) as client:
        yield Live(url, ctx, clock, transport, dispatcher, app.state.services, client)
    server.should_exit = True
    thread.join(15)
    dispatcher.stop()
    ctx.engine.dispose()

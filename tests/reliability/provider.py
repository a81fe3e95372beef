"""The local SendGrid-like server with the faults a real network adds (loopback only).

``HostileSendGrid`` is ``tests.fakes_sendgrid.FakeSendGrid`` plus three queued faults the
plain fake cannot play, each after reading the whole request:

    RESET             a TCP reset (RST, SO_LINGER 0) instead of an answer: not accepted
    ACCEPT_THEN_HANG  the mail is accepted (recorded 202 with an X-Message-Id, so it is in
                      ``accepted`` and ``events()``), then the answer never comes: the client
                      times out although the provider took the mail
    ACCEPT_THEN_RESET accepted, then a reset instead of the 202

``fake.unanswered`` lists the requests accepted without an answer; ``fake.arrivals`` counts
requests as they arrive (``received`` has them only once answered, after ``delay``).
``fake.queue(RESET, 500, ACCEPT_THEN_HANG, FakeSendGrid.rate_limited(reset_in=600), ...)``.
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer

from tests.fakes_sendgrid import FakeSendGrid, Received, Reply, _Handler


@dataclass
class Fault(Reply):
    accept: bool = False
    reset: bool = False


RESET = Fault(reset=True)
ACCEPT_THEN_HANG = Fault(accept=True, hang=True)
ACCEPT_THEN_RESET = Fault(accept=True, reset=True)


class _HostileHandler(_Handler):
    def do_POST(self) -> None:
        fake = self.owner
        with fake._lock:
            fake.arrivals += 1
            fault = fake._replies[0] if fake._replies and isinstance(fake._replies[0], Fault) else None
            if fault is not None:
                fake._replies.pop(0)
        if fault is None:
            super().do_POST()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        received = Received("POST", self.path, dict(self.headers.items()), body, payload, [], at=time.time())
        if fault.accept:       # the provider took it: it will send mail and events for it
            received.status, received.x_message_id = 202, secrets.token_urlsafe(16)
        fake._record(received)
        if fault.accept:
            with fake._lock:
                fake.unanswered.append(received)
        if fault.hang:
            fake._stopping.wait(fake.hang_seconds)
        if fault.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.server.resets.add(id(self.connection))
        self.close_connection = True


class HostileSendGrid(FakeSendGrid):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.unanswered: list[Received] = []     # accepted, but the client never got the answer
        self.arrivals = 0                        # requests that started (``received`` lists them done)

    def lost_answer(self, request: Received) -> bool:
        with self._lock:
            return any(r is request for r in self.unanswered)

    def start(self) -> "HostileSendGrid":
        fake = self

        class Handler(_HostileHandler):
            owner = fake

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            resets: set[int] = set()

            def shutdown_request(self, request: socket.socket) -> None:
                if id(request) in self.resets:   # close at once: with SO_LINGER 0 that is a RST,
                    self.resets.discard(id(request))     # where shutdown() would send a FIN first
                    request.close()
                else:
                    super().shutdown_request(request)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="hostile-sendgrid",
                                        daemon=True)
        self._thread.start()
        return self


def events_for(request: Received, kind: str = "processed", *, timestamp: int | None = None) -> list[dict]:
    """SendGrid Event Webhook items for one accepted request, as the provider would post them."""
    out = []
    for index, p in enumerate(request.payload["personalizations"]):
        for to in p["to"]:
            out.append({"email": to["email"], "timestamp": timestamp or int(time.time()), "event": kind,
                        "sg_event_id": secrets.token_urlsafe(16),
                        "sg_message_id": f"{request.x_message_id}.recvd-{index}-0",
                        **(p.get("custom_args") or {})})
    return out


def message_ids(request: Received) -> list[str]:
    """Our ids (``custom_args.postsale_message_id``) of every personalization in a request."""
    return [(p.get("custom_args") or {}).get("postsale_message_id")
            for p in (request.payload or {}).get("personalizations") or []]

"""A local SendGrid-like HTTP server for tests and benchmarks (loopback only).

    with FakeSendGrid(delay=0.005) as fake:
        transport = SendGridTransport("SG.test", host=fake.url)
        fake.queue(400, FakeSendGrid.rate_limited(reset_in=2), 500, "hang")   # then 202s again
        ...
        fake.received          # every request: headers, payload, problems found, status answered
        fake.events("delivered")   # SendGrid-style webhook events for what it accepted

``POST /v3/mail/send`` answers 202 with an ``X-Message-Id`` after ``delay`` seconds (200 and no
id in sandbox mode, like SendGrid), unless the payload breaks a rule SendGrid documents for
v3 mail send (then 400 with SendGrid's ``{"errors": [...]}`` shape) or the API key is wrong
(401). Queued replies override the default one request at a time: an int status, a
``Reply`` (status, body, headers), or ``"hang"`` (hold the request without answering until
``hang_seconds`` pass or the server stops). HTTP/1.1 keep-alive is supported,
``connections`` counts the TCP connections taken, and ``connect_delay`` charges each new
connection what a TLS handshake would. ``python -m tests.fakes_sendgrid KEY DELAY CONNECT_DELAY``
runs one in its own process (for benchmarks) and prints its URL.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_EMAIL = re.compile(r"^[^@\s<>\",;]+@[^@\s<>\",;]+\.[^@\s<>\",;]+$")
_RESERVED_HEADERS = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                     "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"}
_TOP_LEVEL = {"personalizations", "from", "reply_to", "reply_to_list", "subject", "content", "attachments",
              "template_id", "headers", "categories", "custom_args", "send_at", "batch_id", "asm",
              "ip_pool_name", "mail_settings", "tracking_settings", "sections"}
_PERSONALIZATION = {"to", "cc", "bcc", "from", "subject", "headers", "substitutions", "dynamic_template_data",
                    "custom_args", "send_at"}


@dataclass
class Reply:
    status: int = 202
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any
    problems: list[str]
    status: int | None = None          # None: hung up without answering
    x_message_id: str | None = None
    at: float = 0.0


class FakeSendGrid:
    def __init__(self, *, api_key: str = "SG.test-key", delay: float = 0.0, hang_seconds: float = 30.0,
                 connect_delay: float = 0.0) -> None:
        self.api_key, self.delay, self.hang_seconds = api_key, delay, hang_seconds
        self.connect_delay = connect_delay      # per new connection: what a TLS handshake costs over a WAN
        self.received: list[Received] = []
        self.connections = 0
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ control

    def start(self) -> "FakeSendGrid":
        fake = self

        class Handler(_Handler):
            owner = fake

        class Server(ThreadingHTTPServer):
            request_queue_size = 128       # many concurrent clients, as a benchmark brings

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-sendgrid", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeSendGrid":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def queue(self, *replies: Reply | int | str) -> None:
        """Answer the next requests with these, in order; then the default 202 again."""
        with self._lock:
            for reply in replies:
                if reply == "hang":
                    self._replies.append(Reply(hang=True))
                elif isinstance(reply, int):
                    self._replies.append(Reply(status=reply, body={"errors": [{"message": _REASONS.get(reply, "error"),
                                                                                "field": None}]}))
                else:
                    assert isinstance(reply, Reply)
                    self._replies.append(reply)

    @staticmethod
    def rate_limited(*, reset_in: float = 1.0) -> Reply:
        return Reply(429, {"errors": [{"message": "too many requests", "field": None}]},
                     {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                      "X-RateLimit-Reset": str(int(time.time() + reset_in + 0.999))})

    # ------------------------------------------------------------ what it saw

    @property
    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status is not None and 200 <= r.status < 300]

    def sent_to(self) -> list[tuple[str, str]]:
        """(postsale message id, address) for every accepted personalization, in order."""
        out = []
        for request in self.accepted:
            for p in request.payload["personalizations"]:
                out.append(((p.get("custom_args") or {}).get("postsale_message_id"), p["to"][0]["email"]))
        return out

    def problems(self) -> list[str]:
        with self._lock:
            return [p for r in self.received for p in r.problems]

    def events(self, kind: str = "processed", **extra: Any) -> list[dict[str, Any]]:
        """SendGrid Event Webhook items for every accepted personalization."""
        out = []
        for request in self.accepted:
            categories = request.payload.get("categories") or []
            for index, p in enumerate(request.payload["personalizations"]):
                for to in p["to"]:
                    out.append({"email": to["email"], "timestamp": int(time.time()), "event": kind,
                                "sg_event_id": secrets.token_urlsafe(16),
                                "sg_message_id": f"{request.x_message_id}.recvd-{index}-0",
                                "smtp-id": f"<{request.x_message_id}@fake.sendgrid>", "category": categories,
                                **(p.get("custom_args") or {}), **extra})
        return out

    # ------------------------------------------------------------ serving

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._replies.pop(0) if self._replies else None

    def _record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)


_REASONS = {400: "Bad Request", 401: "authorization required", 403: "access forbidden", 404: "not found",
            413: "content too large", 429: "too many requests", 500: "internal server error",
            502: "bad gateway", 503: "service unavailable"}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeSendGrid
    protocol_version = "HTTP/1.1"          # keep-alive, as SendGrid's API

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner.connections += 1
        if self.owner.connect_delay:
            time.sleep(self.owner.connect_delay)

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items()}
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        received = Received("POST", self.path, headers, body, payload, [], at=time.time())
        fake = self.owner
        reply = fake._next_reply()
        if reply is not None and reply.hang:
            fake._record(received)
            fake._stopping.wait(fake.hang_seconds)
            self.close_connection = True
            return
        if fake.delay:
            time.sleep(fake.delay)
        if self.path != "/v3/mail/send":
            reply = Reply(404, {"errors": [{"message": "not found", "field": None}]})
        elif self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            reply = Reply(401, {"errors": [{"message": "The provided authorization grant is invalid, expired, "
                                                       "or revoked", "field": None}]})
        else:
            received.problems = validate_mail_send(payload, content_type=self.headers.get("Content-Type"))
            if received.problems and reply is None:
                reply = Reply(400, {"errors": [{"message": p.split(": ", 1)[1], "field": p.split(": ", 1)[0],
                                                "help": None} for p in received.problems]})
        if reply is None:
            sandbox = bool(((payload or {}).get("mail_settings") or {}).get("sandbox_mode", {}).get("enable"))
            reply = Reply(200) if sandbox else Reply(202, headers={"X-Message-Id": secrets.token_urlsafe(16)})
        received.status = reply.status
        received.x_message_id = reply.headers.get("X-Message-Id")
        fake._record(received)
        self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        data = b"" if reply.body is None else (reply.body if isinstance(reply.body, bytes)
                                               else json.dumps(reply.body).encode())
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# ---------------------------------------------------------------- SendGrid's documented rules

def validate_mail_send(payload: Any, *, content_type: str | None = "application/json",
                       now: float | None = None) -> list[str]:
    """Problems with a v3 /mail/send body, as ``field: message``, per SendGrid's API reference."""
    problems: list[str] = []

    def bad(where: str, message: str) -> None:
        problems.append(f"{where}: {message}")

    if not (content_type or "").startswith("application/json"):
        bad("content-type", "must be application/json")
    if not isinstance(payload, dict):
        bad("body", "must be a JSON object")
        return problems
    for key in payload:
        if key not in _TOP_LEVEL:
            bad(key, "is not a mail send property")
    _address(payload.get("from"), "from", bad, required=True)
    if payload.get("reply_to") is not None:
        _address(payload["reply_to"], "reply_to", bad, required=True)
    if "reply_to" in payload and "reply_to_list" in payload:
        bad("reply_to_list", "use reply_to or reply_to_list, not both")
    templated = bool(payload.get("template_id"))
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not 1 <= len(personalizations) <= 1000:
        bad("personalizations", "must be an array of 1 to 1000 personalizations")
        personalizations = []
    seen: set[str] = set()
    recipients = 0
    for i, p in enumerate(personalizations):
        where = f"personalizations.{i}"
        if not isinstance(p, dict):
            bad(where, "must be an object")
            continue
        for key in p:
            if key not in _PERSONALIZATION:
                bad(f"{where}.{key}", "is not a personalization property")
        if not isinstance(p.get("to"), list) or not p["to"]:
            bad(f"{where}.to", "is required: at least one recipient")
        for kind in ("to", "cc", "bcc"):
            for j, addr in enumerate(p.get(kind) or []):
                email = _address(addr, f"{where}.{kind}.{j}", bad, required=True)
                recipients += 1
                if email:
                    if email.lower() in seen:
                        bad(f"{where}.{kind}.{j}", "Each email address in the personalization block should be "
                                                   f"unique between to, cc, and bcc. We found a duplicate of {email}")
                    seen.add(email.lower())
        if not templated and not _nonempty_str(p.get("subject")) and not _nonempty_str(payload.get("subject")):
            bad(f"{where}.subject", "The subject is required. You can get around this requirement if you use a "
                                    "template with a subject defined or if every personalization has a subject")
        _headers(p.get("headers"), f"{where}.headers", bad)
        _custom_args(p.get("custom_args"), f"{where}.custom_args", bad)
        _send_at(p.get("send_at"), f"{where}.send_at", bad, now)
    if recipients > 1000:
        bad("personalizations", f"{recipients} recipients: at most 1000 (to, cc and bcc together) per request")
    if "subject" in payload and not _nonempty_str(payload["subject"]):
        bad("subject", "must be a non-empty string")
    content = payload.get("content")
    if content is None:
        if not templated:
            bad("content", "Unless a valid template_id is provided, the content parameter is required")
    elif not isinstance(content, list) or not content:
        bad("content", "must be a non-empty array")
    else:
        types = []
        for k, part in enumerate(content):
            if not isinstance(part, dict) or not _nonempty_str(part.get("type")) or not _nonempty_str(part.get("value")):
                bad(f"content.{k}", "needs a type and a non-empty value")
            else:
                types.append(part["type"])
        if "text/plain" in types and types.index("text/plain") != 0:
            bad("content", "text/plain must be the first content type")
    categories = payload.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or len(categories) > 10:
            bad("categories", "at most 10 categories")
        elif len(set(categories)) != len(categories):
            bad("categories", "categories must be unique")
        elif not all(isinstance(c, str) and 0 < len(c) <= 255 for c in categories):
            bad("categories", "each category is a string of at most 255 characters")
    _headers(payload.get("headers"), "headers", bad)
    _custom_args(payload.get("custom_args"), "custom_args", bad)
    _send_at(payload.get("send_at"), "send_at", bad, now)
    asm = payload.get("asm")
    if asm is not None and (not isinstance(asm, dict) or not isinstance(asm.get("group_id"), int)
                            or isinstance(asm.get("group_id"), bool)):
        bad("asm.group_id", "must be an integer unsubscribe group id")
    settings = payload.get("mail_settings")
    if settings is not None:
        sandbox = (settings or {}).get("sandbox_mode")
        if sandbox is not None and not isinstance((sandbox or {}).get("enable"), bool):
            bad("mail_settings.sandbox_mode.enable", "must be a boolean")
    return problems


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _address(value: Any, where: str, bad: Any, *, required: bool) -> str | None:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        if required:
            bad(where, "must be an object with an email")
        return None
    email = value["email"]
    if not _EMAIL.match(email):
        bad(f"{where}.email", f"Does not contain a valid address: {email!r}")
    if "name" in value and not isinstance(value["name"], str):
        bad(f"{where}.name", "must be a string")
    return email


def _headers(headers: Any, where: str, bad: Any) -> None:
    if headers is None:
        return
    if not isinstance(headers, dict):
        bad(where, "must be an object")
        return
    for key, value in headers.items():
        if key.lower() in _RESERVED_HEADERS:
            bad(f"{where}.{key}", "is a reserved header and cannot be set")
        if not isinstance(value, str):
            bad(f"{where}.{key}", "header values must be strings")
        elif any(ch in value for ch in "\r\n"):
            bad(f"{where}.{key}", "header values may not contain line breaks")


def _custom_args(args: Any, where: str, bad: Any) -> None:
    if args is None:
        return
    if not isinstance(args, dict):
        bad(where, "must be an object")
        return
    if not all(isinstance(v, str) for v in args.values()):
        bad(where, "custom_args values must be strings")
    if len(json.dumps(args).encode()) > 10_000:
        bad(where, "custom_args may not exceed 10,000 bytes")


def _send_at(value: Any, where: str, bad: Any, now: float | None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        bad(where, "must be a unix timestamp")
    elif value > (now or time.time()) + 72 * 3600:
        bad(where, "cannot be scheduled more than 72 hours in advance")


if __name__ == "__main__":      # a fake in its own process, for benchmarks: prints its URL
    import sys

    server = FakeSendGrid(api_key=sys.argv[1] if len(sys.argv) > 1 else "SG.test-key",
                          delay=float(sys.argv[2]) if len(sys.argv) > 2 else 0.0,
                          connect_delay=float(sys.argv[3]) if len(sys.argv) > 3 else 0.0).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()

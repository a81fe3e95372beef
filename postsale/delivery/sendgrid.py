"""SendGrid through the official client (``sendgrid`` 6.12.5, v3 ``/mail/send``).

Each message carries our id twice: in ``custom_args`` (so every provider event names it: the
webhook and crash reconciliation rely on that) and as ``X-Postsale-Message-Id``; plus a stable
``Message-ID``, the journey and touchpoint as categories, the renderer's ``List-Unsubscribe``
headers, reply-to, a text and an HTML part, and the unsubscribe group (``asm``) on marketing
mail when one is configured.

Requests. Messages with identical content (same sender, reply-to, HTML, text, categories and
stream; an incident notice without personal details) share one request as personalizations:
at most 1,000, never the same address twice in one request (SendGrid answers 400), each with
its own recipient, subject, headers and ``custom_args``. Everything else goes one message per
request. Requests run on a thread pool (``concurrency``), each thread keeping one HTTP/1.1
connection open: ``python_http_client`` opens a new connection (and TLS handshake) per call,
so ``sg.client`` is swapped for a subclass that reuses a per-thread connection; the official
client still builds the request, and errors keep its exception classes.

The client's edges, verified on 6.12.5 and mapped here:

    2xx (202; sandbox mode answers 200)         ok, provider id = X-Message-Id
    429                                         transient, retry after X-RateLimit-Reset (epoch s);
                                                the rest of the batch is not attempted
    5xx, URLError (refused, DNS: nothing sent)  transient: the outbox backs off with jitter
    401 / 403                                   transient and the batch stops: a key or sender
                                                problem an operator must fix; mail waits, none is lost
    400 on a shared request                     each message retried alone (one bad address must
                                                not fail the others)
    other 4xx                                   permanent failure with SendGrid's error text
    TimeoutError, a dropped connection after    *uncertain*: SendGrid may have accepted it, and it
    the request went out                        has no idempotency key; the outbox waits for its
                                                events before resending (postsale.store.delivery)

``Mail.add_personalization`` and ``add_category`` insert at index 0: both are fed in reverse.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import select
import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.utils import parseaddr
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import python_http_client
from python_http_client.exceptions import HTTPError as ClientHTTPError
from python_http_client.exceptions import handle_error
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (Asm, Category, Content, CustomArg, From, GroupId, Header, Mail, MailSettings,
                                   MimeType, Personalization, ReplyTo, SandBoxMode, Subject, To)

from postsale.delivery.base import OutgoingEmail, SendResult
from postsale.delivery.outcomes import uncertain

log = logging.getLogger("postsale.delivery.sendgrid")

DEFAULT_HOST = "https://api.sendgrid.com"
MAX_PERSONALIZATIONS = 1000
MAX_CATEGORIES = 10
MESSAGE_ID_ARG = "postsale_message_id"


class SendGridTransport:
    name = "sendgrid"

    def __init__(self, api_key: str, *, host: str = DEFAULT_HOST, sandbox: bool = False, timeout: float = 10.0,
                 concurrency: int = 8, unsubscribe_group: int | None = None, keep_alive: bool = True,
                 max_personalizations: int = MAX_PERSONALIZATIONS,
                 clock: Callable[[], float] = time.time) -> None:
        self.sandbox, self.timeout, self.unsubscribe_group = sandbox, timeout, unsubscribe_group
        self.max_personalizations = max(1, min(MAX_PERSONALIZATIONS, max_personalizations))
        self.concurrency = max(1, concurrency)
        self._clock = clock
        self.client = SendGridAPIClient(api_key, host=host.rstrip("/"))
        self._connections: _Connections | None = None
        if keep_alive:
            self._connections = _Connections()
            self.client.client = _KeepAliveClient(host=self.client.host, request_headers=self.client._default_headers,
                                                  version=3, timeout=timeout, connections=self._connections)
        else:
            self.client.client.timeout = timeout     # the client has no default timeout
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sendgrid")

    # ------------------------------------------------------------ the Transport interface

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        halt = _Halt(limit=max(3, self.concurrency))
        futures = [self._pool.submit(self._request, group, halt)
                   for group in plan_requests(batch, self.max_personalizations)]
        results: dict[str, SendResult] = {}
        for future in futures:
            for result in future.result():
                results[result.message_id] = result
        return [results[email.message_id] for email in batch]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._connections:
            self._connections.close()

    def __enter__(self) -> "SendGridTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ one request

    def _request(self, group: list[OutgoingEmail], halt: "_Halt") -> list[SendResult]:
        if halt.reason:
            return [SendResult(e.message_id, False, error=f"not attempted: {halt.reason}", transient=True,
                               retry_after=halt.retry_after) for e in group]
        try:
            mail = build_mail(group, sandbox=self.sandbox, unsubscribe_group=self.unsubscribe_group)
        except Exception as exc:   # a message SendGrid could never take: no point retrying
            return [SendResult(e.message_id, False, error=f"bad message: {exc}") for e in group]
        try:
            response = self.client.send(mail)
        except ClientHTTPError as exc:
            return self._refused(group, exc, halt)
        except urllib.error.URLError as exc:       # raised before the request was complete
            halt.failure()
            return [SendResult(e.message_id, False, error=f"SendGrid unreachable: {exc.reason}", transient=True)
                    for e in group]
        except (OSError, http.client.HTTPException) as exc:   # TimeoutError, reset: after sending
            halt.failure()
            what = f"timed out after {self.timeout:g}s" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            return [uncertain(e.message_id, f"SendGrid {what}; it may have accepted the message") for e in group]
        halt.success()
        provider_id = _header(response.headers, "X-Message-Id")
        return [SendResult(e.message_id, True, provider_id=provider_id) for e in group]

    def _refused(self, group: list[OutgoingEmail], exc: ClientHTTPError, halt: "_Halt") -> list[SendResult]:
        status = int(exc.status_code)
        text = f"SendGrid {status}: {provider_error(exc.body)}"
        if status == 429:
            retry_after = self._reset_delay(_header(exc.headers, "X-RateLimit-Reset"))
            halt.trip(f"rate limited (429) until the limit resets", retry_after)
            return [SendResult(e.message_id, False, error=text, transient=True, retry_after=retry_after) for e in group]
        if status >= 500:
            halt.failure()
            return [SendResult(e.message_id, False, error=text, transient=True) for e in group]
        if status in (401, 403):
            halt.trip(f"SendGrid refused the API key or sender ({status})")
            log.error("%s: check SENDGRID_API_KEY and the verified sender", text)
            return [SendResult(e.message_id, False, error=text, transient=True) for e in group]
        if status == 400 and len(group) > 1:
            log.warning("SendGrid refused a shared request of %d messages: sending them one by one (%s)",
                        len(group), text)
            return [r for email in group for r in self._request([email], halt)]
        return [SendResult(e.message_id, False, error=text) for e in group]

    def _reset_delay(self, value: str | None) -> float | None:
        try:
            return max(1.0, float(value) - self._clock()) if value else None
        except ValueError:
            return None


# ---------------------------------------------------------------- building requests

def plan_requests(batch: Sequence[OutgoingEmail], limit: int = MAX_PERSONALIZATIONS) -> list[list[OutgoingEmail]]:
    """Group identical content into shared requests (≤ limit, no address twice), keeping order."""
    chunks: dict[tuple, list[tuple[list[OutgoingEmail], set[str]]]] = {}
    order: list[list[OutgoingEmail]] = []
    for email in batch:
        key = (email.from_, email.reply_to, email.html, email.text, email.categories,
               email.custom_args.get("category"))
        address = email.to_email.strip().lower()
        for members, seen in chunks.setdefault(key, []):
            if len(members) < limit and address not in seen:
                members.append(email)
                seen.add(address)
                break
        else:
            chunks[key].append(([email], {address}))
            order.append(chunks[key][-1][0])
    return order


def build_mail(group: Sequence[OutgoingEmail], *, sandbox: bool = False,
               unsubscribe_group: int | None = None) -> Mail:
    """One v3 request for messages that share their content (a single message is a group of one)."""
    first = group[0]
    for email in group:
        for name, value in (("subject", email.subject), ("to", email.to_email), ("to_name", email.to_name),
                            *email.headers.items()):
            if value and any(ch in value for ch in "\r\n\x00"):
                raise ValueError(f"{name} contains a line break or NUL (header injection refused)")
    sender_name, sender = parseaddr(first.from_)
    if "@" not in sender:
        raise ValueError(f"sender {first.from_!r} is not an email address")
    mail = Mail()
    mail.from_email = From(sender, sender_name or None)
    mail.subject = Subject(first.subject)
    if first.reply_to:
        reply_name, reply = parseaddr(first.reply_to)
        mail.reply_to = ReplyTo(reply, reply_name or None)
    if first.text:
        mail.add_content(Content(MimeType.text, first.text))
    if first.html:
        mail.add_content(Content(MimeType.html, first.html))
    categories = list(dict.fromkeys(c[:255] for c in first.categories if c))[:MAX_CATEGORIES]
    for category in reversed(categories):               # add_category inserts at index 0
        mail.add_category(Category(category))
    if unsubscribe_group and first.custom_args.get("category") == "marketing":
        mail.asm = Asm(GroupId(unsubscribe_group))
    if sandbox:
        mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
    for email in reversed(group):                       # add_personalization inserts at index 0
        mail.add_personalization(_personalization(email, sender.rpartition("@")[2]))
    return mail


def _personalization(email: OutgoingEmail, domain: str) -> Personalization:
    p = Personalization()
    p.add_to(To(email.to_email, email.to_name or None))
    p.subject = email.subject
    headers = {**email.headers, "X-Postsale-Message-Id": email.message_id,
               "Message-ID": f"<{email.message_id}@{domain}>"}
    for key, value in headers.items():
        p.add_header(Header(key, value))
    args = {**{k: str(v) for k, v in email.custom_args.items() if v is not None}, MESSAGE_ID_ARG: email.message_id}
    for key, value in args.items():
        p.add_custom_arg(CustomArg(key, value))
    return p


def provider_error(body: Any) -> str:
    """SendGrid's ``{"errors": [{"message", "field"}]}`` as one line; raw text otherwise."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body or "")
    try:
        errors = json.loads(text).get("errors") or []
        parts = [f"{e.get('message')}" + (f" (field {e['field']})" if e.get("field") not in (None, "null") else "")
                 for e in errors if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)[:1000]
    except (ValueError, AttributeError):
        pass
    return text.strip()[:1000] or "(no body)"


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, dict):    # a plain dict is case-sensitive
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


class _Halt:
    """Stops a batch early: after a 429, an auth refusal, or too many failures in a row."""

    def __init__(self, limit: int) -> None:
        self.limit, self.reason, self.retry_after = limit, None, None
        self._failures = 0
        self._lock = threading.Lock()

    def trip(self, reason: str, retry_after: float | None = None) -> None:
        with self._lock:
            if self.reason is None:
                self.reason, self.retry_after = reason, retry_after

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            failures = self._failures
        if failures >= self.limit:
            self.trip(f"SendGrid failing ({failures} errors in a row)")

    def success(self) -> None:
        with self._lock:
            self._failures = 0


# ---------------------------------------------------------------- connection reuse

class _Response:
    """What ``python_http_client.Response`` reads from a urllib response."""

    def __init__(self, status: int, body: bytes, headers: http.client.HTTPMessage) -> None:
        self._status, self._body, self._headers = status, body, headers

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self) -> http.client.HTTPMessage:
        return self._headers


class _Connections:
    """One keep-alive HTTP/1.1 connection per thread.

    Errors keep urllib's split: a failure while connecting or sending is a ``URLError``
    (the provider cannot have acted on a request it did not fully receive); a failure while
    waiting for the answer is raised as is (``TimeoutError``, ``RemoteDisconnected``): uncertain.
    A reused connection is checked first, as urllib3 does: readable while idle means the
    server closed it, so a fresh one is opened instead of risking a request on a dead socket.
    """

    def __init__(self, max_idle: float = 30.0) -> None:
        self.max_idle = max_idle
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._tls = ssl.create_default_context()

    def request(self, req: urllib.request.Request, timeout: float | None) -> _Response:
        parts = urlsplit(req.full_url)
        conn = self._connection(parts.scheme, parts.netloc, timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(req.get_method(), path, body=req.data, headers=dict(req.header_items()))
        except OSError as exc:
            self._drop(conn)
            raise urllib.error.URLError(exc) from exc
        try:
            resp = conn.getresponse()
            body = resp.read()
        except BaseException:
            self._drop(conn)
            raise
        if resp.will_close:
            self._drop(conn)
        else:
            self._local.used = time.monotonic()
        if resp.status >= 400:
            raise handle_error(urllib.error.HTTPError(req.full_url, resp.status, resp.reason, resp.msg,
                                                      io.BytesIO(body)))
        return _Response(resp.status, body, resp.msg)

    def _connection(self, scheme: str, netloc: str, timeout: float | None) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and (self._local.key != (scheme, netloc) or _dropped(conn)
                                 or time.monotonic() - self._local.used > self.max_idle):
            self._drop(conn)
            conn = None
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(netloc, timeout=timeout, context=self._tls)
            else:
                conn = http.client.HTTPConnection(netloc, timeout=timeout)
            self._local.conn, self._local.key, self._local.used = conn, (scheme, netloc), time.monotonic()
            with self._lock:
                self._all.append(conn)
        else:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    if conn.sock is None:
        return False           # not connected yet: http.client connects on the next request
    try:
        return bool(select.select([conn.sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class _KeepAliveClient(python_http_client.Client):
    """``python_http_client.Client`` whose requests go through ``_Connections``."""

    def __init__(self, *args: Any, connections: _Connections, **kwargs: Any) -> None:
        self._connections = connections         # before anything can reach __getattr__
        super().__init__(*args, **kwargs)

    def _build_client(self, name: str | None = None) -> "_KeepAliveClient":
        url_path = self._url_path + [name] if name else self._url_path
        return _KeepAliveClient(host=self.host, version=self._version, request_headers=self.request_headers,
                                url_path=url_path, append_slash=self.append_slash, timeout=self.timeout,
                                connections=self._connections)

    def _make_request(self, opener: Any, request: urllib.request.Request, timeout: float | None = None) -> Any:
        return self._connections.request(request, timeout or self.timeout)

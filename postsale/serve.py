"""`postsale serve`: the HTTP API and an in-process scheduler in one process (the embedded mode).

    uvicorn (main thread) ── POST /events, webhooks ──► ingest ──► Dispatcher.trigger(customers)
                                                                          │
    trigger worker (thread) ◄─────────────────────────────────────────────┘
        dispatch(those customers) + deliver: the first email does not wait for the next tick
    APScheduler BackgroundScheduler, every POSTSALE_DISPATCH_INTERVAL seconds
        tick: finalize provisional survey answers, dispatch everything due, deliver

One process-wide ``RLock`` (``Dispatcher.lock``) serialises every dispatch batch with ingest and
the API's other writes. SQLite has one writer, and a batch reads its runs before it writes them:
without the lock a tick and an API-triggered dispatch could advance the same run twice, or an
event could exit a run between a batch's read and its write. Delivery has a lock of its own: two
deliveries must never claim the same queued rows, but a slow provider must not hold up ingest.

Shutdown (SIGINT/SIGTERM): uvicorn stops accepting and finishes the requests in flight; then the
scheduler shuts down waiting for a running tick, which stops after the batch it is in, and the
trigger worker finishes the batch it holds. A batch is one transaction, so even a hard
kill leaves no half-written batch: only work that the next start picks up.

APScheduler never runs alongside a Prefect deployment schedule (DESIGN.md): production
dispatches from ``prefect.yaml``; this module is the one-machine mode.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import uvicorn
from sqlalchemy.exc import InterfaceError, OperationalError

from postsale.delivery.base import Transport
from postsale.settings import DEV_SECRET, Settings
from postsale.store.context import Context
from postsale.store.delivery import DeliveryReport, deliver
from postsale.store.dispatch import DispatchReport, dispatch
from postsale.store.surveys import finalize_provisional

log = logging.getLogger("postsale.serve")

MAX_TICK_BATCHES = 200     # dispatch batches in one tick at most (100,000 customers at 500)
DELIVERY_BATCH = 200       # messages handed to the transport at once
# The database down, unreachable or locked past its busy timeout: a batch is one transaction,
# so nothing was half-done and the next tick retries. Worth one line, not a traceback a tick.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


class Dispatcher:
    """Dispatch and delivery for one process: the scheduled tick, API-triggered runs, one lock."""

    def __init__(self, ctx: Context, transport: Transport | None, *, interval_seconds: float = 5.0,
                 reconcile_after: float | None = None) -> None:
        self.ctx = ctx
        self.reconcile_after = reconcile_after
        self.transport = transport
        self.interval_seconds = interval_seconds
        self.lock = threading.RLock()
        self._deliver_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._busy = False
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._scheduler: Any = None
        self.ticks = 0
        self.last_tick_at: datetime | None = None
        self.last_error: str | None = None
        self._database_down = False

    # ------------------------------------------------------------ what the API calls

    def writing(self) -> threading.RLock:
        """``with dispatcher.writing():`` around any write that must not interleave a batch."""
        return self.lock

    def trigger(self, customer_ids: Iterable[str]) -> None:
        """Dispatch these customers soon, in the worker thread; never blocks the caller."""
        ids = set(customer_ids)
        if not ids or self._stopping.is_set():
            return
        with self._cond:
            self._pending |= ids
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until every triggered dispatch has run (what tests wait on instead of sleeping)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending or self._busy) and self._worker is not None and self._worker.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def status(self) -> dict[str, Any]:
        return {"scheduled": self._scheduler is not None and not self._stopping.is_set(),
                "interval_seconds": self.interval_seconds, "ticks": self.ticks,
                "last_tick_at": self.last_tick_at.isoformat() if self.last_tick_at else None,
                "last_error": self.last_error}

    # ------------------------------------------------------------ the work

    def tick(self) -> None:
        """One scheduled round: survey answers that became final, everything due, the outbox."""
        if self._stopping.is_set():
            return
        started = time.monotonic()
        try:
            with self.lock:
                finalize_provisional(self.ctx, self.ctx.clock.now())
            self._dispatch_all()
            self.last_error = None
            self._database_back()
        except DATABASE_UNAVAILABLE as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._database_unavailable(exc)
        except Exception as exc:  # a tick must never kill the scheduler thread
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("dispatch tick failed")
        self.ticks += 1
        self.last_tick_at = datetime.now(timezone.utc)
        took = time.monotonic() - started
        if took > self.interval_seconds:
            log.warning("a dispatch tick took %.1fs, longer than the %.1fs interval", took, self.interval_seconds)

    def run_for(self, customer_ids: Iterable[str]) -> None:
        """Dispatch only these customers now, a batch at a time, delivering after each (the
        API's immediate path: the first emails go out while the rest are still decided)."""
        ids = sorted(set(customer_ids))
        size = max(1, self.ctx.batch_size)
        for start in range(0, len(ids), size):
            if self._stopping.is_set():
                return   # the rest stay due: the next tick, or the next start, takes them
            with self.lock:
                report = dispatch(self.ctx, customer_ids=ids[start:start + size])
            self._log(report)
            self.deliver()

    def _dispatch_all(self) -> None:
        """Everything due, one batch per hold of the lock so that ingest is never kept waiting
        longer than a batch takes; at most MAX_TICK_BATCHES a tick (the next tick goes on)."""
        for _ in range(MAX_TICK_BATCHES):
            if self._stopping.is_set():
                return
            with self.lock:
                report = dispatch(self.ctx, max_batches=1)
            self._log(report)
            self.deliver()
            if report.batches == 0 or report.customers < self.ctx.batch_size:
                return

    def _database_unavailable(self, exc: Exception) -> None:
        if not self._database_down:
            self._database_down = True
            log.warning("database unavailable, dispatch and delivery wait for it (%s)", str(exc).splitlines()[0])

    def _database_back(self) -> None:
        if self._database_down:
            self._database_down = False
            log.warning("database reachable again: dispatch and delivery resume")

    def _log(self, report: DispatchReport) -> None:
        if report.runs:
            log.info("dispatched %d runs of %d customers: %s", report.runs, report.customers, dict(report.actions))
        for level, line in report.notices:
            log.log(logging.WARNING if level == "warning" else logging.DEBUG, line)

    def deliver(self) -> DeliveryReport:
        total = DeliveryReport()
        if self.transport is None:
            return total
        with self._deliver_lock:
            while True:
                report = deliver(self.ctx, self.transport, batch_size=DELIVERY_BATCH, max_batches=1,
                                 reconcile_after=self.reconcile_after)
                total.sent += report.sent
                total.failed += report.failed
                total.retried += report.retried
                total.errors += report.errors
                if report.sent + report.failed + report.retried < DELIVERY_BATCH or self._stopping.is_set():
                    break
        if total.sent or total.failed or total.retried:
            log.info("delivered %d via %s, retrying %d, failed %d", total.sent, self.transport.name,
                     total.retried, total.failed)
        return total

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping.is_set():
                    self._cond.wait()
                if self._stopping.is_set():
                    return   # pending customers stay due in the database: the next start runs them
                ids, self._pending = self._pending, set()
                self._busy = True
            try:
                self.run_for(ids)
            except DATABASE_UNAVAILABLE as exc:
                self._database_unavailable(exc)      # the customers stay due: the next tick takes them
            except Exception:
                log.exception("API-triggered dispatch failed; the next tick retries")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    # ------------------------------------------------------------ life cycle

    def start(self, *, schedule: bool = True) -> None:
        """Start the trigger worker and, with ``schedule``, the interval tick (first one now)."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="postsale-dispatch-now", daemon=True)
            self._worker.start()
        if schedule and self._scheduler is None:
            from apscheduler.schedulers.background import BackgroundScheduler
            scheduler = BackgroundScheduler(timezone=timezone.utc)
            scheduler.add_job(self.tick, "interval", seconds=self.interval_seconds, id="postsale-dispatch",
                              name="dispatch + deliver", max_instances=1, coalesce=True,
                              misfire_grace_time=None, next_run_time=datetime.now(timezone.utc))
            scheduler.start()
            self._scheduler = scheduler

    def stop(self, timeout: float | None = 60.0) -> None:
        """Finish the running batch, start no other, and stop both threads."""
        self._stopping.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)


# ---------------------------------------------------------------- the runner

@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 5 * 1024 * 1024
    log_level: str = "info"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare_settings(settings: Settings, host: str, announce: Callable[[str], None]) -> Settings:
    """Refuse what is unsafe off loopback; on loopback, make a dev run work out of the box.

    - ``POSTSALE_SECRET`` still the placeholder: anyone could forge unsubscribe and survey
      links. Refused on a public interface; a warning on loopback.
    - No ``POSTSALE_API_TOKEN``: on loopback a random token is generated for this run and
      printed (the API is never open without a token: loopback is not a security boundary —
      other local users, SSRF, a proxy in front). Elsewhere ``POST /events`` and
      ``DELETE /customers`` answer 503 until the variable is set.
    """
    loopback = is_loopback(host)
    if not loopback:
        settings.require_production_secret()   # raises ConfigError with the fix
    elif settings.secret == DEV_SECRET or len(settings.secret) < 16:
        announce("warning: POSTSALE_SECRET is the development placeholder: fine on loopback, "
                 "set a random one before serving links to customers")
    if not settings.api_token:
        if loopback:
            token = secrets.token_urlsafe(24)
            settings = settings.model_copy(update={"api_token": token})
            announce(f"no POSTSALE_API_TOKEN set: this run accepts the generated token {token}")
        else:
            announce("warning: no POSTSALE_API_TOKEN set: POST /events and DELETE /customers answer 503 "
                     "until it is")
    return settings


class _RedactAccessLog(logging.Filter):
    """Access log lines without addresses (``DELETE /customers?email=``) or link tokens."""

    _EMAIL = re.compile(r"(email=)[^&\s]*", re.IGNORECASE)
    _TOKEN = re.compile(r"^/(u|s)/[^/?\s]+")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = self._TOKEN.sub(lambda m: f"/{m.group(1)}/…", self._EMAIL.sub(r"\1…", args[2]))
            record.args = (*args[:2], path, *args[3:])
        return True


def run(settings: Settings, options: ServeOptions = ServeOptions(), *,
        announce: Callable[[str], None] = print) -> int:
    """Serve until SIGINT/SIGTERM, then shut down cleanly; the process exit code."""
    from postsale.api.app import create_app
    from postsale.delivery.factory import make_transport

    settings = prepare_settings(settings, options.host, announce)
    ctx = Context.from_settings(settings)
    transport = make_transport(settings)
    dispatcher = Dispatcher(ctx, transport, interval_seconds=settings.dispatch_interval_seconds,
                            reconcile_after=settings.delivery_reconcile_after)
    app = create_app(settings, ctx=ctx, dispatcher=dispatcher, max_body_bytes=options.max_body_bytes)
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level=options.log_level,
                            lifespan="on", timeout_graceful_shutdown=30, server_header=False)
    url = f"http://{options.host if ':' not in options.host else f'[{options.host}]'}:{options.port}"
    where = (f"emails land in {settings.outbox.resolve()}/ (open the .eml files)" if transport.name == "outbox"
             else f"emails go out via {transport.name}")

    def started() -> None:   # bound and listening: only now tick, and only now say where to look
        dispatcher.start()
        announce(f"postsale serving {url}  (POST /events, GET /healthz, /u/…, /s/…, /webhooks/…)")
        announce(f"dispatching every {settings.dispatch_interval_seconds:g}s; {where}")
        announce(f"database {settings.database_url}; per-journey numbers: postsale report")
        announce("Ctrl+C or SIGTERM stops cleanly (the running batch finishes)")

    server = _Server(config, started)
    logging.getLogger("uvicorn.access").addFilter(_RedactAccessLog())
    logging.getLogger("apscheduler").setLevel(logging.ERROR)   # our own warning says when ticks run long
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    logging.getLogger("postsale").setLevel(logging.INFO)

    signals = {"count": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        # uvicorn handles the first signal while it runs and re-raises it after its graceful
        # shutdown: we land here then, and carry on with ours. A second one means "now".
        signals["count"] += 1
        server.should_exit = True
        if signals["count"] > 1:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        server.run()
    except SystemExit:   # uvicorn exits when it cannot bind; it logged why
        code = 1
        announce(f"postsale could not listen on {url} (uvicorn's error says why: is the port in use?)")
    except KeyboardInterrupt:
        code = 130
    finally:
        try:
            dispatcher.stop()
        except KeyboardInterrupt:
            code = 130
        ctx.engine.dispose()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if server.started:
        announce("postsale stopped" if code == 0 else f"postsale stopped (exit {code})")
    return code


class _Server(uvicorn.Server):
    """uvicorn's Server, telling us once it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_started()


__all__ = ["Dispatcher", "ServeOptions", "run", "is_loopback", "prepare_settings"]

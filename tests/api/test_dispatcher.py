"""serve's Dispatcher: one lock (a tick and an API-triggered dispatch never overlap), coalesced
triggers, a shutdown that lets the running batch finish; and serve's start-up safety rules."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

import postsale.serve as serve
from postsale.delivery.memory import MemoryTransport
from postsale.errors import ConfigError
from postsale.serve import Dispatcher, _RedactAccessLog, prepare_settings
from postsale.settings import DEV_SECRET, load_settings
from postsale.store.context import Context
from postsale.store.dispatch import DispatchReport
from tests.api.conftest import FIXTURE


@pytest.fixture
def ctx(tmp_path: Path):
    ctx = Context.build(database_url=f"sqlite:///{tmp_path}/d.db", journeys=FIXTURE / "journeys",
                        templates=FIXTURE / "templates", secret=DEV_SECRET)
    yield ctx
    ctx.engine.dispose()


class SlowDispatch:
    """Stands in for store.dispatch.dispatch: records overlap and what it was asked."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds
        self.inside = 0
        self.most_inside = 0
        self.calls: list[frozenset[str] | None] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, ctx, *, customer_ids=None, max_batches=None) -> DispatchReport:
        with self._lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.calls.append(frozenset(customer_ids) if customer_ids is not None else None)
        self.entered.set()
        self.gate.wait(10)
        time.sleep(self.seconds)
        with self._lock:
            self.inside -= 1
        return DispatchReport()


def test_ticks_and_triggered_dispatches_never_overlap(ctx, monkeypatch):
    fake = SlowDispatch()
    monkeypatch.setattr(serve, "dispatch", fake)
    dispatcher = Dispatcher(ctx, MemoryTransport(), interval_seconds=3600)
    dispatcher.start(schedule=False)
    ticks = [threading.Thread(target=dispatcher.tick) for _ in range(8)]
    for i, thread in enumerate(ticks):
        thread.start()
        dispatcher.trigger({f"c-{i}"})
    for thread in ticks:
        thread.join()
    assert dispatcher.wait_idle(10)
    dispatcher.stop()

    assert fake.most_inside == 1
    assert fake.calls.count(None) == 8                                  # every tick ran
    triggered = set().union(*[c for c in fake.calls if c is not None])
    assert triggered == {f"c-{i}" for i in range(8)}                    # every customer, coalesced
    assert len([c for c in fake.calls if c is not None]) <= 8


def test_stop_lets_the_running_tick_finish_and_starts_no_other(ctx, monkeypatch):
    fake = SlowDispatch()
    fake.gate.clear()
    monkeypatch.setattr(serve, "dispatch", fake)
    dispatcher = Dispatcher(ctx, MemoryTransport(), interval_seconds=0.05)
    dispatcher.start()                                                  # first tick now
    assert fake.entered.wait(10)

    stopper = threading.Thread(target=dispatcher.stop)
    stopper.start()
    time.sleep(0.2)
    assert stopper.is_alive()                                           # waiting for the batch
    fake.gate.set()
    stopper.join(10)

    assert not stopper.is_alive()
    assert fake.inside == 0
    calls = len(fake.calls)
    time.sleep(0.2)
    assert len(fake.calls) == calls                                     # nothing after the stop
    assert dispatcher.status()["scheduled"] is False


def test_a_failing_tick_is_logged_and_the_next_one_runs(ctx, monkeypatch, caplog):
    def broken(ctx, **_):
        raise RuntimeError("database is locked")

    monkeypatch.setattr(serve, "dispatch", broken)
    dispatcher = Dispatcher(ctx, MemoryTransport())
    with caplog.at_level(logging.ERROR, logger="postsale.serve"):
        dispatcher.tick()
        dispatcher.tick()

    assert dispatcher.ticks == 2
    assert dispatcher.status()["last_error"] == "RuntimeError: database is locked"
    assert "dispatch tick failed" in caplog.text


# ---------------------------------------------------------------- start-up rules

def test_serving_off_loopback_needs_a_real_secret():
    with pytest.raises(ConfigError, match="POSTSALE_SECRET"):
        prepare_settings(load_settings(secret=DEV_SECRET, api_token="t" * 20), "0.0.0.0", print)


def test_loopback_without_a_token_generates_one_and_says_so():
    lines: list[str] = []
    settings = prepare_settings(load_settings(secret=DEV_SECRET, api_token=None), "127.0.0.1", lines.append)

    assert settings.api_token and len(settings.api_token) >= 24
    assert any(settings.api_token in line and "POSTSALE_API_TOKEN" in line for line in lines)
    assert any("placeholder" in line for line in lines)


def test_off_loopback_without_a_token_warns_and_keeps_the_api_closed():
    lines: list[str] = []
    settings = prepare_settings(load_settings(secret="a-real-secret-of-32-characters!!", api_token=None),
                                "0.0.0.0", lines.append)

    assert settings.api_token is None
    assert any("503" in line for line in lines)


def test_the_access_log_hides_addresses_and_link_tokens():
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "DELETE", "/customers?email=ada%40example.com", "1.1", 200), None)
    link = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "GET", "/s/WyJzdXJ2ZXkiLCJjLTQyIl0.abc?a=4", "1.1", 200), None)

    _RedactAccessLog().filter(record)
    _RedactAccessLog().filter(link)

    assert "ada" not in record.getMessage() and "email=…" in record.getMessage()
    assert "/s/…?a=4" in link.getMessage()

"""Dispatch decided in two processes writes what one process writes, and fails whole.

``postsale.store.workers``: a large batch is cut in parts, the first decided by a worker
process, the rest here, and written in order in the dispatcher's transaction.
"""

from __future__ import annotations

import shutil
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlmodel import Session

from models import Customer, Message, Run, Timeline
from postsale.settings import load_settings
from postsale.store import dispatch as dispatch_mod
from postsale.store import workers as workers_mod
from postsale.store.context import Context
from postsale.store.dispatch import dispatch
from postsale.store.ingest import ingest_events
from postsale.store.workers import (POOL_MIN_JOBS, POOL_START_BACKLOG, WorkerLost, auto_workers,
                                    start_workers)
from tests.store.conftest import FIXTURE, T0
from tests.store.events import customer, event, order

H = timedelta(hours=1)
ZONES = ("Europe/Rome", "Asia/Tokyo", "UTC", "America/Los_Angeles", "Australia/Sydney")
CUSTOMERS = 2 * POOL_MIN_JOBS + 10      # one batch, two parts of more than the minimum


def rows(ctx):
    """Every row dispatch writes, in key order (timeline ids: the order decisions were taken)."""
    with Session(ctx.engine) as s:
        return {model.__tablename__: [tuple(r) for r in s.execute(select(model.__table__).order_by(model.id))]
                for model in (Run, Timeline, Message)}


def journeys_with_a_start(tmp_path):
    """The fixture journeys and one that starts another (an ``enroll`` in the middle of a batch)."""
    journeys = tmp_path / "journeys"
    shutil.copytree(FIXTURE / "journeys", journeys)
    (journeys / "chain.yaml").write_text(
        "journey: chain\nname: Chain\ntouchpoint: immediate_post_sale\ncategory: transactional\n"
        "trigger: {event: order.shipped}\nsteps:\n  - wait: 1h\n  - start: issue-resolution\n")
    return journeys


def load(ctx):
    people = [customer(f"c-{n:03d}", tz=ZONES[n % len(ZONES)]) for n in range(CUSTOMERS)]
    events = []
    for n, person in enumerate(people):
        kind = n % 5
        events.append(order(f"o-{n}", T0, person, skus=(("KETTLE-1", "kitchen"),) if n % 2 else (("MUG-1", "mugs"),)))
        if kind == 1:
            events.append(event(f"s-{n}", "order.shipped", T0, person))
        elif kind == 2:
            events.append(event(f"t-{n}", "ticket.opened", T0, person))
        elif kind == 3:
            events.append(event(f"u-{n}", "email.unsubscribed", T0, person))
    ingest_events(ctx, events)
    with Session(ctx.engine) as s:   # some forgotten outright
        s.execute(update(Customer).where(Customer.id.in_(["c-004", "c-099"])).values(email=None))
        s.commit()


def scenario(make_ctx, tmp_path, workers, name):
    """Dispatch through a week, a journey edited midway (its older runs keep their version)."""
    journeys = journeys_with_a_start(tmp_path / name)
    ctx = make_ctx(journeys=journeys)
    ctx.dispatch_workers = workers
    if workers > 1:
        assert start_workers(ctx, timeout=120)
    load(ctx)
    reports = []
    for n, hours in enumerate((0, 1, 30, 80, 300)):
        if n == 2:   # a new version of post-purchase: runs already in it keep the old one
            path = journeys / "post-purchase.yaml"
            path.write_text(path.read_text().replace("name: Thank you and first steps", "name: Thanks"))
            url = ctx.engine.url.render_as_string(hide_password=False)
            ctx = make_ctx(journeys=journeys, url=url, start=ctx.clock.now())
            ctx.dispatch_workers = workers
            if workers > 1:
                assert start_workers(ctx, timeout=120)
        ctx.clock.set(T0 + hours * H)
        reports.append(dispatch(ctx).to_json())
    return reports, rows(ctx)


@pytest.fixture
def parts(monkeypatch):
    """How many customers each worker part carried."""
    sent: list[int] = []
    submit = workers_mod._Pool.submit

    def counting(self, part, jobs, refs, now):
        sent.append(len(jobs))
        return submit(self, part, jobs, refs, now)

    monkeypatch.setattr(workers_mod._Pool, "submit", counting)
    return sent


def test_two_processes_write_the_rows_one_writes(make_ctx, tmp_path, parts):
    alone = scenario(make_ctx, tmp_path, 1, "alone")
    assert not parts
    shared = scenario(make_ctx, tmp_path, 2, "shared")
    assert parts and all(n >= POOL_MIN_JOBS for n in parts)
    assert shared == alone
    reports, tables = alone
    actions = {a for r in reports for a in r["actions"]}
    assert actions >= {"sent", "held", "suppressed", "exited", "entered", "alert"}
    assert any(r[2] == "chain" for r in tables["runs"]) and len(tables["messages"]) > CUSTOMERS


def test_small_batches_are_decided_in_the_dispatcher(ctx, parts):
    """What serve dispatches right after an event: no worker, no round trip."""
    ingest_events(ctx, [order(f"o-{n}", T0, customer(f"c-{n}")) for n in range(3)])
    report = dispatch(ctx, workers=2)
    assert report.actions["sent"] == 3 and not parts
    assert ctx._dispatch_state.pool is None


def test_a_worker_that_dies_fails_its_batch_and_the_next_pass_retries(make_ctx, monkeypatch):
    ctx = make_ctx()
    ingest_events(ctx, [order(f"o-{n}", T0, customer(f"c-{n:03d}")) for n in range(CUSTOMERS)])
    twin = make_ctx()
    ingest_events(twin, [order(f"o-{n}", T0, customer(f"c-{n:03d}")) for n in range(CUSTOMERS)])
    assert start_workers(ctx, 2, timeout=120)
    before = rows(ctx)
    send = workers_mod._Worker.send

    def send_and_die(self, message):
        send(self, message)
        if message[0] == "decide":        # the worker has its part, and is killed deciding it
            self.proc.kill()
            self.proc.wait()

    monkeypatch.setattr(workers_mod._Worker, "send", send_and_die)
    with pytest.raises(WorkerLost):
        dispatch(ctx, workers=2)
    assert rows(ctx) == before                # rolled back: nothing written, nothing lost
    monkeypatch.setattr(workers_mod._Worker, "send", send)
    assert start_workers(ctx, 2, timeout=120)  # a new worker
    report = dispatch(ctx, workers=2)
    assert report.actions["sent"] == CUSTOMERS
    dispatch(twin, workers=1)
    assert rows(ctx) == rows(twin)


def test_an_error_in_a_worker_fails_the_batch(ctx, monkeypatch):
    ingest_events(ctx, [order(f"o-{n}", T0, customer(f"c-{n:03d}")) for n in range(CUSTOMERS)])
    assert start_workers(ctx, 2, timeout=120)
    before = rows(ctx)
    # a version the worker cannot resolve: its part raises there, and the batch with it
    monkeypatch.setattr(workers_mod, "_refs", lambda journeys, catalog: {v: "no-such-journey" for v in journeys})
    with pytest.raises(KeyError):
        dispatch(ctx, workers=2)
    assert rows(ctx) == before
    monkeypatch.undo()
    assert dispatch(ctx, workers=2).actions["sent"] == CUSTOMERS


def test_the_workers_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("POSTSALE_DISPATCH_WORKERS", "3")
    assert load_settings().dispatch_workers == 3
    monkeypatch.delenv("POSTSALE_DISPATCH_WORKERS")
    cfg = load_settings(POSTSALE_DATABASE_URL=f"sqlite:///{tmp_path}/s.db", POSTSALE_JOURNEYS=FIXTURE / "journeys",
                        POSTSALE_TEMPLATES=FIXTURE / "templates")
    assert cfg.dispatch_workers == 0                      # one per core
    ctx = Context.from_settings(cfg)
    assert ctx.dispatch_workers == auto_workers() >= 1
    ctx.engine.dispose()


def test_a_context_with_a_stand_in_renderer_decides_alone(ctx, parts):
    """Workers build their renderer from the templates: a Context whose renderer is something
    else (a test double) must not hand its batches to them."""
    ingest_events(ctx, [order(f"o-{n}", T0, customer(f"c-{n:03d}")) for n in range(CUSTOMERS)])
    ctx.renderer = type(ctx.renderer)(FIXTURE / "templates", ctx.policy, ctx.links)
    assert not start_workers(ctx, 2)
    assert dispatch(ctx, workers=2).actions["sent"] == CUSTOMERS and not parts


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_with_a_killed_dispatcher(tmp_path):
    """SIGKILL leaves a dispatcher no time to stop its workers: they go at the end of their input."""
    import os
    import signal
    import subprocess
    import time
    script = (
        "import sys, time\n"
        "from postsale.clock import VirtualClock\n"
        "from postsale.settings import DEV_SECRET\n"
        "from postsale.store.context import Context\n"
        "from postsale.store.workers import start_workers\n"
        f"ctx = Context.build(database_url='sqlite:///{tmp_path}/k.db', journeys={str(FIXTURE / 'journeys')!r},\n"
        f"                    templates={str(FIXTURE / 'templates')!r}, secret=DEV_SECRET)\n"
        "assert start_workers(ctx, 2, timeout=120)\n"
        "print(ctx._dispatch_state.pool.workers[0].proc.pid, flush=True)\n"
        "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    worker = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{worker}/stat") as stat:   # a zombie waits for init: gone all the same
                if stat.read().split()[2] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("the worker outlived its dispatcher")


def test_a_short_pass_starts_no_worker(ctx, parts):
    """A pass with a few batches due (a CLI run, a quiet tick) never earns a worker's start-up."""
    ingest_events(ctx, [order(f"o-{n}", T0, customer(f"c-{n:03d}")) for n in range(CUSTOMERS)])
    assert CUSTOMERS >= POOL_MIN_JOBS and CUSTOMERS < POOL_START_BACKLOG
    assert dispatch(ctx, workers=2).actions["sent"] == CUSTOMERS
    assert not parts and ctx._dispatch_state.pool is None


def test_a_long_pass_starts_its_workers(ctx, parts, monkeypatch):
    monkeypatch.setattr(dispatch_mod, "POOL_START_BACKLOG", CUSTOMERS)
    ingest_events(ctx, [order(f"o-{n}", T0, customer(f"c-{n:03d}")) for n in range(CUSTOMERS)])
    dispatch(ctx, workers=2)
    assert ctx._dispatch_state.pool is not None      # started for this pass, kept for the next
    ctx._dispatch_state.pool.close()

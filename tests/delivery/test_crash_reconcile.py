"""Kill the delivery process between SendGrid's 202 and our commit; restart; reconcile.

The provider has no idempotency key, so the outbox must find out what happened: a provider
event carrying our id settles the message as sent (no duplicate); with no evidence after the
reconcile window it is resent once, flagged; a second crash does not buy a third copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from postsale.delivery.webhook import parse_events
from postsale.settings import Settings
from postsale.store.delivery import deliver
from postsale.store.delivery_events import record_events
from tests.delivery.conftest import queue_messages, rows
from tests.delivery.webhook_kit import Signer, WebhookServer

ROOT = Path(__file__).resolve().parents[2]
WINDOW = timedelta(minutes=15)


def run_and_kill(ctx, fake, tmp_path: Path, db_url: str) -> dict:
    marker = tmp_path / f"sent-{time.monotonic_ns()}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.delivery.crash_worker", db_url, fake.url,
                             ctx.clock.now().isoformat(), str(marker)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the worker ended before it was killed"
            assert time.monotonic() < deadline, "the worker never reached the provider"
            time.sleep(0.05)
        proc.kill()                                   # SIGKILL: no handler, no cleanup, no commit
        assert proc.wait(timeout=10) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
    return json.loads(marker.read_text())


@pytest.fixture
def db(tmp_path, make_ctx):
    url = f"sqlite:///{tmp_path}/crash.db"
    return make_ctx(url=url), url


def test_evidence_settles_without_a_resend_and_silence_resends_once_flagged(db, fake, sendgrid, tmp_path):
    ctx, url = db
    m0, m1, m2 = queue_messages(ctx, 3)
    accepted = run_and_kill(ctx, fake, tmp_path, url)
    assert accepted == {m0: True, m1: True, m2: True} and len(fake.received) == 3
    assert {m.status for m in rows(ctx).values()} == {"sending"}        # the 202s were never recorded

    # Restarted at once: nothing is resent while the outcome is unknown.
    report = deliver(ctx, sendgrid)
    assert (report.sent, report.resent) == (0, 0) and len(fake.received) == 3

    # SendGrid's events for m0 arrive (signed webhook), carrying our id in custom_args.
    signer = Signer.generate()
    webhook = WebhookServer(ctx, Settings(_env_file=None, sendgrid_webhook_public_key=signer.public_key), signer)
    try:
        evidence = [e for e in fake.events("processed") if e["postsale_message_id"] == m0]
        assert webhook.post(evidence).json()["settled"] == 1
    finally:
        webhook.stop()
    settled = rows(ctx)[m0]
    assert (settled.status, settled.reconcile) == ("sent", "evidence")
    assert settled.provider_id in {r.x_message_id for r in fake.received}

    # Past the window, m1 and m2 have no evidence: resent once each, flagged.
    ctx.clock.advance(seconds=WINDOW.total_seconds() + 1)
    report = deliver(ctx, sendgrid, reconcile_after=WINDOW)
    assert (report.resent, report.sent) == (2, 2)
    after = rows(ctx)
    for mid in (m1, m2):
        assert (after[mid].status, after[mid].reconcile) == ("sent", "resent")
        assert "resent without provider evidence" in after[mid].error and after[mid].attempts == 2
    sends = [mid for mid, _ in fake.sent_to()]
    assert sends.count(m0) == 1 and sends.count(m1) == 2 and sends.count(m2) == 2

    # Nothing more, however often delivery runs.
    ctx.clock.advance(days=1)
    assert deliver(ctx, sendgrid, reconcile_after=WINDOW).sent == 0 and len(fake.sent_to()) == 5


def test_a_message_that_kills_its_sender_twice_is_not_sent_a_third_time(db, fake, sendgrid, tmp_path):
    ctx, url = db
    (mid,) = queue_messages(ctx, 1)
    run_and_kill(ctx, fake, tmp_path, url)
    ctx.clock.advance(seconds=WINDOW.total_seconds() + 1)
    run_and_kill(ctx, fake, tmp_path, url)                 # the worker's sweep resends it, and dies again
    row = rows(ctx)[mid]
    assert (row.status, row.reconcile, row.attempts) == ("sending", "resent", 2)
    ctx.clock.advance(seconds=WINDOW.total_seconds() + 1)
    report = deliver(ctx, sendgrid, reconcile_after=WINDOW)
    row = rows(ctx)[mid]
    assert report.failed == 1 and row.status == "failed" and row.error.startswith("fate unknown")
    assert [m for m, _ in fake.sent_to()] == [mid, mid]

    # A late provider event still tells the truth.
    batch = parse_events(json.dumps(fake.events("delivered")[:1]), now=ctx.clock.now())
    assert record_events(ctx, batch.events).settled == 1
    assert rows(ctx)[mid].status == "sent" and rows(ctx)[mid].delivery_state == "delivered"

"""`postsale serve` as a real process: purchase events over HTTP, thank-you emails in the
outbox within seconds, a clean exit on SIGTERM or SIGINT."""

from __future__ import annotations

import email
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from email import policy
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
POSTSALE = Path(sys.executable).parent / "postsale"
TOKEN = "serve-process-token-0123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is early afternoon now: out of the shipped quiet hours."""
    offset = 13 - now.hour
    offset = offset - 24 if offset > 14 else offset + 24 if offset < -12 else offset
    return "Etc/GMT" + (f"-{offset}" if offset > 0 else f"+{-offset}" if offset < 0 else "")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_serve(tmp_path: Path, env: dict[str, str]):
    """``postsale serve`` on a free port, answering /healthz (another port if it was taken)."""
    for attempt in range(3):
        port = free_port()
        log = (tmp_path / f"serve-{attempt}.log").open("w+")
        process = subprocess.Popen([str(POSTSALE), "serve", "--port", str(port)], cwd=tmp_path, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"

        def healthy():
            if process.poll() is not None:
                return "exited"
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        state = wait_for(healthy, 60, "serve to answer /healthz")
        if state is True:
            return process, url, log
        output = Path(log.name).read_text()
        if "address already in use" not in output:
            raise AssertionError(f"serve exited early:\n{output}")
    raise AssertionError("no free port after three tries")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_sends_thank_you_mail_within_seconds_and_stops_cleanly(tmp_path: Path, stop: signal.Signals):
    if not POSTSALE.exists():
        pytest.skip(f"{POSTSALE} is not installed (pip install -e .)")
    outbox = tmp_path / "outbox"
    env = {**os.environ, "POSTSALE_DATABASE_URL": f"sqlite:///{tmp_path}/serve.db", "POSTSALE_OUTBOX": str(outbox),
           "POSTSALE_JOURNEYS": str(ROOT / "journeys"), "POSTSALE_TEMPLATES": str(ROOT / "templates"),
           "POSTSALE_TRANSPORT": "outbox", "POSTSALE_DISPATCH_INTERVAL": "1", "POSTSALE_API_TOKEN": TOKEN,
           "PYTHONUNBUFFERED": "1"}
    env.pop("PREFECT_API_URL", None)
    process, url, log = start_serve(tmp_path, env)
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        zone = daytime_zone(now)
        events = [{"id": f"serve-order-{i}", "type": "order.placed", "occurred_at": now.isoformat(),
                   "customer": {"id": f"c-serve-{i}", "email": f"buyer{i}@example.com", "name": f"Buyer {i}",
                                "timezone": zone},
                   "data": {"order_id": f"A{i}", "total": 59.0, "currency": "EUR",
                            "items": [{"sku": "KETTLE-1", "name": "Steel kettle", "category": "kitchen",
                                       "quantity": 1, "price": 59.0}]}} for i in range(3)]
        ndjson = "\n".join(json.dumps(e) for e in events)
        posted = time.monotonic()
        response = httpx.post(f"{url}/events", content=ndjson, timeout=10,
                              headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 3

        def thank_yous():
            found = {}
            for path in outbox.glob("*.eml") if outbox.exists() else ():
                message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
                if str(message["Subject"]).startswith("Thanks for your order"):
                    found[str(message["To"])] = message
            return found if len(found) == 3 else None

        try:
            mail = wait_for(thank_yous, 20, "three thank-you emails in the outbox")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- serve's output ---\n{Path(log.name).read_text()}") from None
        took = time.monotonic() - posted
        print(f"POST → three thank-you emails in the outbox: {took:.2f}s")
        assert sorted(mail) == [f"Buyer {i} <buyer{i}@example.com>" for i in range(3)]
        assert all(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in mail.values())
        ticks = wait_for(lambda: httpx.get(f"{url}/healthz").json()["dispatcher"]["ticks"], 10, "a scheduler tick")
        assert ticks >= 1

        process.send_signal(stop)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = Path(log.name).read_text()
    assert code == 0, output
    assert "postsale serving http://127.0.0.1" in output and str(outbox) in output
    assert "postsale report" in output
    assert "Shutting down" in output and "postsale stopped" in output
    assert "Traceback" not in output

"""``postsale serve`` as a process, and the two outside parties that talk to it, for the fault
and soak suites. Loopback only.

    serve = ServeProcess(tmp_path, env)          # one port for every life, so clients keep it
    serve.start(); ...; serve.kill()             # SIGKILL: no handler runs, nothing is flushed
    shop = Shop(serve, events, token)            # posts batches until each one is answered 202
    webhook = ProviderWebhook(serve, fake, signer)   # posts the provider's events for what it took

Both clients behave like their real counterparts: a shop retries a batch until it gets a 202
(connection refused, 5xx and 503 included), SendGrid retries a webhook post until it gets a
2xx. So "nothing accepted is lost" can be checked as: every event the shop was told 202 about
is in the database, and every event was eventually told 202.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.delivery.webhook_kit import Signer
from tests.fakes_sendgrid import FakeSendGrid
from tests.reliability.provider import events_for

ROOT = Path(__file__).resolve().parents[2]
POSTSALE = Path(sys.executable).parent / "postsale"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class ServeProcess:
    """``postsale serve`` on one fixed loopback port, started and killed as often as needed."""

    def __init__(self, workdir: Path, env: dict[str, str], *, port: int | None = None, piped: bool = False) -> None:
        self.workdir, self.env = workdir, {**env, "PYTHONUNBUFFERED": "1"}
        # piped: output through a pipe this process copies to the log (a serve forbidden to
        # write files, RLIMIT_FSIZE, can still log)
        self.piped = piped
        self.env.pop("PREFECT_API_URL", None)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.lives = 0
        self.logs: list[Path] = []

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def spawn(self) -> Path:
        """Start a life without waiting for it to listen; returns its log file."""
        log = self.workdir / f"serve-{self.lives}.log"
        self.logs.append(log)
        command = [str(POSTSALE), "serve", "--port", str(self.port)]
        if self.piped:
            self.process = subprocess.Popen(command, cwd=self.workdir, env=self.env, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT)
            threading.Thread(target=_copy, args=(self.process.stdout, log), daemon=True).start()
        else:
            with log.open("w") as out:
                self.process = subprocess.Popen(command, cwd=self.workdir, env=self.env, stdout=out,
                                                stderr=subprocess.STDOUT)
        self.lives += 1
        return log

    def start(self, timeout: float = 60.0) -> None:
        """Start a life and wait until it answers /healthz."""
        log = self.spawn()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve did not answer /healthz in {timeout}s:\n{log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a pulled plug would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the clean shutdown; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.process.returncode

    def output(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs)

    def tracebacks(self) -> list[str]:
        """Tracebacks in any life's log (a SIGKILL leaves none: anything here is a real error)."""
        out = []
        for log in self.logs:
            text = log.read_text(errors="replace")
            start = text.find("Traceback")
            while start != -1:
                out.append(f"{log.name}: {text[max(0, start - 300):start + 2500]}")
                start = text.find("Traceback", start + 1)
        return out


def _copy(pipe: Any, log: Path) -> None:
    with log.open("wb") as out:
        for line in pipe:
            out.write(line)
            out.flush()


class Shop(threading.Thread):
    """Posts ``batches`` of events in order, each until the API answers 202 with no rejection."""

    def __init__(self, serve: ServeProcess, batches: list[list[dict]], token: str, *, pause: float = 0.0) -> None:
        super().__init__(name="shop", daemon=True)
        self.serve, self.batches, self.token = serve, batches, token
        self.pause = pause                   # between batches: a steady stream rather than a burst
        self.acknowledged: set[str] = set()
        self.answers: dict[int, int] = {}    # HTTP status (0: no answer) → count
        self.latencies: list[tuple[float, float]] = []   # (monotonic start, seconds) of each 202
        self.error: str | None = None
        self._halted = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            for batch in self.batches:
                while not self._halted.is_set():
                    started = time.monotonic()
                    try:
                        response = client.post(f"{self.serve.url}/events", json=batch,
                                               headers={"Authorization": f"Bearer {self.token}"})
                        status = response.status_code
                    except httpx.TransportError:
                        status = 0
                    self.answers[status] = self.answers.get(status, 0) + 1
                    if status == 202:
                        self.latencies.append((started, time.monotonic() - started))
                        body = response.json()
                        if body.get("rejected"):
                            self.error = f"events rejected: {body['rejected'][:3]}"
                            return
                        self.acknowledged.update(e["id"] for e in batch)
                        break
                    if status not in (0, 502, 503, 504):
                        self.error = f"POST /events answered {status}: {response.text[:500]}"
                        return
                    self._halted.wait(0.1)
                if self._halted.is_set():
                    return
                self._halted.wait(self.pause)

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"the shop had not posted every batch after {timeout}s"
        assert self.error is None, self.error

    def halt(self) -> None:
        self._halted.set()
        self.join(30)


class ProviderWebhook(threading.Thread):
    """SendGrid's Event Webhook: for every request the provider accepted, signed events posted
    to serve (``processed`` then, when ``delivered``, a ``delivered``), retried until a 2xx."""

    def __init__(self, serve: ServeProcess, fake: FakeSendGrid, signer: Signer, *, delivered: bool = True) -> None:
        super().__init__(name="provider-webhook", daemon=True)
        self.serve, self.fake, self.signer, self.delivered = serve, fake, signer, delivered
        self.posted = 0                      # events acknowledged by serve
        self.latencies: list[tuple[float, float]] = []
        self.answers: dict[int, int] = {}
        self._seen = 0
        self._halted = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._halted.is_set():
                received = list(self.fake.received)
                fresh, self._seen = received[self._seen:], len(received)
                for request in fresh:
                    if request.status is not None and 200 <= request.status < 300 and request.x_message_id:
                        kinds = ("processed", "delivered") if self.delivered else ("processed",)
                        self._post(client, [e for kind in kinds for e in events_for(request, kind)])
                if not fresh:
                    self._halted.wait(0.1)

    def _post(self, client: httpx.Client, events: list[dict]) -> None:
        body = json.dumps(events).encode()
        while not self._halted.is_set():
            started = time.monotonic()
            try:
                response = client.post(f"{self.serve.url}/webhooks/sendgrid", content=body,
                                       headers=self.signer.headers(body, int(time.time())))
                status = response.status_code
            except httpx.TransportError:
                status = 0
            self.answers[status] = self.answers.get(status, 0) + 1
            if 200 <= status < 300:
                self.latencies.append((started, time.monotonic() - started))
                self.posted += len(events)
                return
            self._halted.wait(0.1)

    def caught_up(self) -> bool:
        return self._seen == len(self.fake.received)

    def halt(self) -> None:
        self._halted.set()
        self.join(30)


def sendgrid_env(tmp_path: Path, fake: FakeSendGrid, signer: Signer, *, database_url: str, journeys: Path,
                 templates: Path, token: str, reconcile_after: float, **extra: Any) -> dict[str, str]:
    """The environment of a ``serve`` that delivers to the local fake and takes its webhook."""
    env = {**os.environ, "POSTSALE_DATABASE_URL": database_url, "POSTSALE_JOURNEYS": str(journeys),
           "POSTSALE_TEMPLATES": str(templates), "POSTSALE_TRANSPORT": "sendgrid",
           "SENDGRID_API_KEY": fake.api_key, "POSTSALE_SENDGRID_HOST": fake.url,
           "POSTSALE_SECRET": "reliability-secret-0123456789abcdef", "POSTSALE_API_TOKEN": token,
           "POSTSALE_SENDGRID_WEBHOOK_PUBLIC_KEY": signer.public_key, "POSTSALE_DISPATCH_INTERVAL": "1",
           "POSTSALE_DELIVERY_TIMEOUT": "5", "POSTSALE_DELIVERY_RECONCILE_AFTER": str(reconcile_after),
           "POSTSALE_OUTBOX": str(tmp_path / "outbox")}
    env.update({k: str(v) for k, v in extra.items()})
    return env

"""The deploy check CI runs: ``prefect.yaml`` against a real ``prefect server start`` on loopback.

A throwaway server (temporary PREFECT_HOME, SQLite) on a free port; the process work pool;
``prefect --no-prompt deploy --all``; the four deployments with their schedules and triggers;
then the ``postsale.order.placed`` event ``flows.events.emit_postsale_event`` sends (as the API
does), posted to the server's ``/api/events``, must make the trigger schedule a run of
``ingest/on-order-placed`` carrying the event.
No worker is needed: a scheduled run is the proof. Every wait is bounded; the server is killed
at the end whatever happens. It does not use the Prefect test harness.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from prefect.events.schemas.events import Event as PrefectEvent

from flows.events import describe

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "postsale/samples/events/order.placed.json"
PREFECT = [sys.executable, "-m", "prefect", "--no-prompt"]

pytestmark = pytest.mark.prefect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(probe: Callable[[], Any], timeout: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"{what}: nothing after {timeout:.0f}s\n{tail}")


class Server:
    def __init__(self, home: Path) -> None:
        self.home, self.port = home, _free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.log = home / "server.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "POSTSALE_"))}
        self.env = {**base, "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
                    "PREFECT_API_URL": self.api}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port),
                 "--no-ui", "--no-scheduler", "--no-late-runs", "--analytics-off"],
                cwd=self.home, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait(lambda: self.process.poll() is None and httpx.get(f"{self.api}/health", timeout=2).is_success
              or self._died(), 120, "prefect server /api/health", self.log)

    def _died(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"prefect server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
        return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def run(self, *args: str, timeout: float = 90, cwd: Path = ROOT) -> str:
        done = subprocess.run(list(args), cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args[:6])} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def post(self, path: str, body: dict | list | None = None) -> Any:
        response = httpx.post(f"{self.api}{path}", json={} if body is None else body, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_prefect_yaml_deploys_and_an_order_event_triggers_an_ingest_run(server: Server):
    server.run(*PREFECT, "work-pool", "create", "postsale-pool", "--type", "process", timeout=90)
    server.run(*PREFECT, "deploy", "--all", timeout=120)

    deployments = {d["name"]: d for d in server.post("/deployments/filter")}
    assert set(deployments) == {"every-minute", "morning", "on-order-placed", "incident"}
    assert all(d["work_pool_name"] == "postsale-pool" for d in deployments.values())
    assert [s["schedule"]["interval"] for s in deployments["every-minute"]["schedules"]] == [60.0]
    [cron] = deployments["morning"]["schedules"]
    assert (cron["schedule"]["cron"], cron["schedule"]["timezone"]) == ("0 7 * * *", "UTC")
    assert "event" in deployments["incident"]["parameter_openapi_schema"]["required"]
    triggers = {a["trigger"]["expect"][0]: a for a in server.post("/automations/filter")}
    assert triggers["postsale.order.placed"]["trigger"]["match"] == {"prefect.resource.id": "postsale.customer.*"}

    # the event emit_postsale_event sends (test_events.py checks that it sends it), posted to
    # the server's events endpoint: a subprocess importing Prefect would cost 5-10 s more
    sample = json.loads(SAMPLE.read_text())
    server.post("/events", [json.loads(PrefectEvent(**describe(sample)).model_dump_json())])

    ingest_id = deployments["on-order-placed"]["id"]

    def triggered() -> list[dict]:
        runs = server.post("/flow_runs/filter", {"deployments": {"id": {"any_": [ingest_id]}}})
        return [r for r in runs if (r["parameters"].get("event") or {}).get("id") == sample["id"]]

    [run] = _wait(triggered, 60, "a flow run of ingest/on-order-placed", server.log)
    assert run["parameters"]["event"] == sample
    assert run["parameters"]["event_id"] == sample["id"]
    assert run["state"]["type"] == "SCHEDULED"

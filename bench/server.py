"""``postsale serve`` as users run it: a real process, uvicorn on loopback, its own scheduler."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from bench.common import API_TOKEN, JOURNEYS, ROOT, SECRET, TEMPLATES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(database_url: str, *, transport: str = "memory", extra_env: dict[str, str] | None = None,
          startup_timeout: float = 90.0) -> Iterator[httpx.Client]:
    """Start ``postsale serve`` and yield a keep-alive client with the bearer token set."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="postsale-bench-serve-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTSALE_", "PREFECT_API_URL"))}
    env.update({"POSTSALE_DATABASE_URL": database_url, "POSTSALE_JOURNEYS": str(JOURNEYS),
                "POSTSALE_TEMPLATES": str(TEMPLATES), "POSTSALE_TRANSPORT": transport,
                "POSTSALE_SECRET": SECRET, "POSTSALE_API_TOKEN": API_TOKEN,
                "POSTSALE_OUTBOX": str(workdir / "outbox"), **(extra_env or {})})
    # The CLI of *this* tree (PYTHONPATH), whatever the virtualenv's `postsale` script points at.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, "-c", "from postsale.cli import app; app(prog_name='postsale')",
               "serve", "--port", str(port), "--log-level", "warning"]
    log = open(workdir / "serve.log", "w", encoding="utf-8")
    proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=60.0)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"postsale serve exited with {proc.returncode}: "
                                   f"{(workdir / 'serve.log').read_text()[-2000:]}")
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"postsale serve did not answer /healthz within {startup_timeout:.0f}s")
            time.sleep(0.2)
        yield client
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()

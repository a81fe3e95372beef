"""Run one hostile attempt in a forked child with a memory ceiling and a deadline.

A sandbox hole that allocates gigabytes or never returns must show up as a failed test, not
as a test runner the kernel kills or a suite that never ends. So each attack runs in a child
limited to ``headroom`` bytes of address space above what it inherited (RLIMIT_AS) and is
killed after ``seconds``; the parent reports what happened:

    outcome = guarded(lambda: evaluate("'x' * 10**9", {}))
    outcome.kind     "returned" | "raised" | "killed" (deadline) | "died" (signal, exit)
    outcome.error    the exception's class name when it raised ("ExpressionError", "MemoryError")
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HEADROOM = 384 * 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    kind: str
    error: str | None = None
    message: str = ""
    seconds: float = 0.0
    value: Any = None

    def __str__(self) -> str:
        detail = f"{self.error}: {self.message[:300]}" if self.error else repr(self.value)[:300]
        return f"{self.kind} after {self.seconds:.2f}s ({detail})"


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def guarded(attempt: Callable[[], Any], *, seconds: float = 10.0, headroom: int = HEADROOM) -> Outcome:
    read_end, write_end = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:                                          # the child: limit, try, report, vanish
        os.close(read_end)
        try:
            limit = _address_space() + headroom
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            try:
                value = attempt()
                report = ("returned", None, "", _picklable(value))
            except BaseException as exc:  # the point: every way out is reported, never re-raised
                report = ("raised", type(exc).__name__, str(exc)[:2000], None)
            data = pickle.dumps(report)
        except BaseException as exc:  # even the report failing (out of memory) is an outcome
            data = pickle.dumps(("raised", type(exc).__name__, "while reporting", None))
        os.write(write_end, data)
        os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = started + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return Outcome("killed", seconds=time.monotonic() - started)
            ready, _, _ = select.select([read_end], [], [], left)
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_end)
    took = time.monotonic() - started
    if not chunks:
        return Outcome("died", message=f"wait status {status}", seconds=took)
    kind, error, message, value = pickle.loads(b"".join(chunks))
    return Outcome(kind, error, message, took, value)


def _picklable(value: Any) -> Any:
    try:
        pickle.dumps(value)
        return value
    except Exception:
        return repr(value)[:2000]

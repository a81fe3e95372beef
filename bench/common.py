"""Helpers the measured children share: a Context on the shipped catalogue, timers, transports."""

from __future__ import annotations

import importlib.util
import statistics
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

from bench.data import NOW
from postsale.clock import VirtualClock
from postsale.delivery.base import OutgoingEmail, SendResult
from postsale.delivery.memory import MemoryTransport

ROOT = Path(__file__).resolve().parents[1]
JOURNEYS, TEMPLATES = ROOT / "journeys", ROOT / "templates"
SECRET = "bench-secret-0123456789abcdef-not-for-production"
API_TOKEN = "bench-token-0123456789"


def context(url: str, *, now: datetime | None = NOW, batch_size: int = 500, create: bool = True) -> Any:
    """The engine's Context on ``url`` with the shipped journeys and templates.

    ``now=None`` keeps the system clock (serve, latency); otherwise a virtual clock at ``now``.
    """
    from postsale.clock import SystemClock
    from postsale.store.context import Context
    clock = VirtualClock(now) if now is not None else SystemClock()
    return Context.build(database_url=url, journeys=JOURNEYS, templates=TEMPLATES, secret=SECRET,
                         clock=clock, batch_size=batch_size, create=create)


def warm(ctx: Any) -> None:
    """Compile every template and locale variant: what a long-running dispatcher has done long
    before the pass a benchmark times (a cold compile costs ~15 ms a template)."""
    for path in TEMPLATES.glob("*.html.j2"):
        name = path.name.split(".")[0]
        if not name.startswith("_"):
            for locale in (None, "it"):
                ctx.renderer.compile(name, locale)


class DrainingTransport(MemoryTransport):
    """The memory transport, forgetting each batch once it has answered for it.

    ``MemoryTransport`` keeps every email it was handed; at 100,000 emails of ~6 KB that is the
    benchmark measuring its own list. This one counts instead.
    """

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def send(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        results = super().send(batch)
        self.count += len(self.sent)
        self.sent.clear()
        return results


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """Wall seconds (``s``: what users wait) and this process's CPU seconds (``cpu``: what the
    work costs, steadier than wall time on a machine shared with other jobs)."""
    out: dict[str, float] = {}
    start, cpu = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - start
        out["cpu"] = time.process_time() - cpu


def rate(count: float, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False

"""Clocks: the system one in production, a virtual one for simulate, demo and tests.

Nothing in the engine calls ``datetime.now()``: the edge asks its clock and passes ``now`` in.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class VirtualClock:
    """A clock that only moves when told to (and never backwards)."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        instant = instant.astimezone(timezone.utc)
        if instant > self._now:
            self._now = instant

    def advance(self, **delta: float) -> None:
        from datetime import timedelta
        self._now += timedelta(**delta)

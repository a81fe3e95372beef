"""Durations as journeys write them: ``30m``, ``6h``, ``2d``, ``1w``, combined ``1d12h``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"^(?:\d+[smhdw])+$")


def parse_duration(text: str | int | float) -> timedelta:
    """Parse ``1d12h`` into a timedelta; raise ValueError with a hint on anything else."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"duration {text!r} needs a unit, like 30m, 6h, 2d or 1w")
    compact = text.strip().replace(" ", "").lower()
    if not compact or not _WHOLE.match(compact):
        raise ValueError(f"bad duration {text!r}: use numbers with units s/m/h/d/w, like 30m, 2d or 1d12h")
    total = timedelta()
    seen: set[str] = set()
    for amount, unit in _PART.findall(compact):
        if unit in seen:
            raise ValueError(f"bad duration {text!r}: unit {unit!r} given twice")
        seen.add(unit)
        total += timedelta(**{_UNIT[unit]: int(amount)})
    if total <= timedelta(0):
        raise ValueError(f"duration {text!r} must be longer than zero")
    return total


def format_duration(delta: timedelta) -> str:
    """The shortest ``1d12h``-style text for a timedelta (inverse of parse_duration)."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    out = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            out.append(f"{amount}{unit}")
    return "".join(out)

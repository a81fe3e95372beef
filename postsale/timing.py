"""Wall-clock arithmetic in the customer's time zone: quiet hours and ``at: "10:00"``.

Everything here is pure: instants go in and aware UTC instants come out. Daylight saving is
handled by asking ``zoneinfo`` what the wall clock reads, never by adding hours to a local
time, because a local day is 23, 24 or 25 hours long.

Two DST rules (SPEC.md §9.4):

- a wall time that does not exist (02:30 on a spring-forward day) means the first instant after
  the gap, when the clock jumps to 03:00;
- a wall time that happens twice (01:30 on a fall-back day) means its first occurrence.

Dispatch asks the same questions over and over: every customer due in a pass has the same
``now``, so a ``wait`` step asks ``next_wall_time(now + 2 days, 10:00, zone)`` for each of a
dozen zones, and quiet hours ask ``quiet_hours_end(now, zone, quiet)`` alike. The answers are
pure functions of the instant, so ``next_wall_time`` and ``quiet_hours_end`` keep them
(``_MEMO`` answers each), keyed by the instant *in UTC*: two aware datetimes in one zone that
differ only in ``fold`` compare and hash equal although they are an hour apart, UTC ones never.
Nothing about a day's offsets is assumed: a new question is worked out as before.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from postsale.spec.model import QuietHours

UTC = timezone.utc

__all__ = ["UTC", "in_quiet_hours", "local", "next_wall_time", "quiet_hours_end", "wall_instants", "zone"]

_MEMO = 8192                                          # answers kept per function


@lru_cache(maxsize=1024)
def zone(name: str) -> tzinfo:
    """The time zone of this name, kept: ``ZoneInfo`` itself keeps only the last 8 zones
    strongly, so a batch spanning more of them would read zone files again and again."""
    return ZoneInfo(name)


def _zone(tz: str | tzinfo) -> tzinfo:
    return zone(tz) if isinstance(tz, str) else tz


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{instant!r} is naive: pass an aware datetime")
    return instant


def local(instant: datetime, tz_name: str | tzinfo) -> datetime:
    """``instant`` as the customer's wall clock shows it."""
    return _aware(instant).astimezone(_zone(tz_name))


def _quiet_at(wall: time, quiet: QuietHours) -> bool:
    if quiet.start < quiet.end:                       # same-day window, 13:00-15:00
        return quiet.start <= wall < quiet.end
    return wall >= quiet.start or wall < quiet.end     # across midnight, 21:00-08:00


def in_quiet_hours(instant: datetime, tz: str | tzinfo, quiet: QuietHours | None) -> bool:
    """Whether the customer's wall clock at ``instant`` is inside ``[start, end)``."""
    if quiet is None or quiet.start == quiet.end:
        return False
    return _quiet_at(local(instant, tz).time(), quiet)


def quiet_hours_end(instant: datetime, tz: str | tzinfo, quiet: QuietHours | None) -> datetime:
    """The first instant at or after ``instant`` outside quiet hours (``instant`` if not quiet)."""
    return _quiet_hours_end_memo(_aware(instant).astimezone(UTC), _zone(tz), quiet)


def _quiet_hours_end(instant: datetime, tz: str | tzinfo, quiet: QuietHours | None) -> datetime:
    """``quiet_hours_end`` worked out (the memo's answers come from here)."""
    zone = _zone(tz)
    if not in_quiet_hours(instant, zone, quiet):
        return _aware(instant).astimezone(UTC)
    assert quiet is not None
    wall = local(instant, zone)
    day = wall.date()
    if quiet.start > quiet.end and wall.time() >= quiet.start:
        day += timedelta(days=1)                      # the evening part ends tomorrow morning
    # Both occurrences of an ambiguous end are tried: at 01:15 (second time round) with quiet
    # hours ending 01:30, the answer is the second 01:30, not one already in the past.
    for offset in range(3):
        for candidate in wall_instants(day + timedelta(days=offset), quiet.end, zone):
            if candidate >= instant and not in_quiet_hours(candidate, zone, quiet):
                return candidate
    raise AssertionError(f"quiet hours {quiet} never end after {instant}")  # pragma: no cover


_quiet_hours_end_memo = lru_cache(maxsize=_MEMO)(_quiet_hours_end)


def next_wall_time(instant: datetime, at: time, tz: str | tzinfo) -> datetime:
    """The first instant >= ``instant`` whose wall-clock time in ``tz`` is ``at``."""
    return _next_wall_time_memo(_aware(instant).astimezone(UTC), at, _zone(tz))


def _next_wall_time(instant: datetime, at: time, tz: str | tzinfo) -> datetime:
    """``next_wall_time`` worked out (the memo's answers come from here)."""
    zone = _zone(tz)
    day = local(instant, zone).date()
    # Tomorrow always has an answer; the third day only guards a zone that skipped a whole day.
    for offset in range(3):
        candidate = wall_instants(day + timedelta(days=offset), at, zone)[0]
        if candidate >= instant:
            return candidate
    raise AssertionError(f"no {at} after {instant} in {tz}")  # pragma: no cover


_next_wall_time_memo = lru_cache(maxsize=_MEMO)(_next_wall_time)


def wall_instants(day: date, at: time, tz: str | tzinfo) -> list[datetime]:
    """The UTC instants at which the wall clock in ``tz`` reads ``at`` on ``day``, in order.

    Usually one; two on a fall-back day; in a spring-forward gap, none exist, and the list holds
    the first instant after the gap instead.
    """
    zone = _zone(tz)
    naive = datetime.combine(day, at.replace(tzinfo=None))
    found: list[datetime] = []
    for fold in (0, 1):
        candidate = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if candidate.astimezone(zone).replace(tzinfo=None) == naive and candidate not in found:
            found.append(candidate)
    return sorted(found) if found else [_gap_end(naive, zone)]


def _gap_end(naive: datetime, zone: tzinfo) -> datetime:
    """The instant the clock jumps over ``naive`` (which falls in a spring-forward gap).

    PEP 495 reads a gap time with the offset before the jump (fold=0, landing after the
    transition) or after it (fold=1, landing before): the transition lies between the two.
    A bisection over whole seconds finds it without assuming how long the gap is.
    """
    before = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    after = int(naive.replace(tzinfo=zone, fold=0).timestamp())
    lo, hi = min(before, after), max(before, after)
    target = datetime.fromtimestamp(hi, UTC).astimezone(zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)

"""Quiet hours and wall-clock alignment on the four 2026 DST days of New York and Rome.

2026-03-08  New York  02:00 EST -> 03:00 EDT at 07:00Z   (23-hour day)
2026-11-01  New York  02:00 EDT -> 01:00 EST at 06:00Z   (25-hour day)
2026-03-29  Rome      02:00 CET -> 03:00 CEST at 01:00Z
2026-10-25  Rome      03:00 CEST -> 02:00 CET at 01:00Z
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postsale.timing import UTC, in_quiet_hours, local, next_wall_time, quiet_hours_end, wall_instants
from tests.factories import at, quiet

NY, ROME = "America/New_York", "Europe/Rome"
NIGHT = quiet("21:00", "08:00")


def test_local_shows_the_wall_clock():
    assert local(at(2026, 7, 1, 12), ROME).hour == 14
    assert local(at(2026, 1, 1, 12), ROME).hour == 13


def test_naive_instants_are_refused():
    with pytest.raises(ValueError):
        in_quiet_hours(at(2026, 1, 1).replace(tzinfo=None), ROME, NIGHT)


# ---------------------------------------------------------------- quiet hours

@pytest.mark.parametrize("instant, tz, expected", [
    (at(2026, 3, 8, 3), NY, at(2026, 3, 8, 12)),      # 22:00 EST -> 08:00 EDT: 10 h of night
    (at(2026, 11, 1, 2), NY, at(2026, 11, 1, 13)),    # 22:00 EDT -> 08:00 EST: 12 h of night
    (at(2026, 3, 28, 22), ROME, at(2026, 3, 29, 6)),  # 23:00 CET -> 08:00 CEST
    (at(2026, 10, 24, 21), ROME, at(2026, 10, 25, 7)),  # 23:00 CEST -> 08:00 CET
    (at(2026, 3, 8, 8), NY, at(2026, 3, 8, 12)),      # 04:00 EDT, after the jump, same morning
    (at(2026, 10, 25, 1, 30), ROME, at(2026, 10, 25, 7)),  # 02:30 CET, the second one
])
def test_quiet_hours_end_across_the_change(instant, tz, expected):
    assert in_quiet_hours(instant, tz, NIGHT)
    end = quiet_hours_end(instant, tz, NIGHT)
    assert end == expected
    assert end.tzinfo is UTC
    assert local(end, tz).time() == time(8, 0)
    assert not in_quiet_hours(end, tz, NIGHT)


def test_quiet_window_edges_are_start_inclusive_end_exclusive():
    # 2026-11-23 in Rome is CET (UTC+1).
    assert not in_quiet_hours(at(2026, 11, 23, 19, 59, 59), ROME, NIGHT)   # 20:59:59
    assert in_quiet_hours(at(2026, 11, 23, 20), ROME, NIGHT)               # 21:00
    assert in_quiet_hours(at(2026, 11, 24, 6, 59, 59), ROME, NIGHT)        # 07:59:59
    assert not in_quiet_hours(at(2026, 11, 24, 7), ROME, NIGHT)            # 08:00


def test_outside_quiet_hours_the_instant_itself_is_returned():
    instant = at(2026, 11, 23, 12)
    assert quiet_hours_end(instant, ROME, NIGHT) == instant
    assert quiet_hours_end(instant, ROME, None) == instant


def test_same_day_window():
    lunch = quiet("13:00", "15:00")
    assert not in_quiet_hours(at(2026, 11, 23, 11, 59), ROME, lunch)      # 12:59
    assert in_quiet_hours(at(2026, 11, 23, 12), ROME, lunch)              # 13:00
    assert quiet_hours_end(at(2026, 11, 23, 13), ROME, lunch) == at(2026, 11, 23, 14)
    assert not in_quiet_hours(at(2026, 11, 23, 22), ROME, lunch)


def test_empty_window_is_never_quiet():
    assert not in_quiet_hours(at(2026, 11, 23, 3), ROME, quiet("08:00", "08:00"))


def test_quiet_hours_ending_inside_the_spring_gap_end_at_the_jump():
    # Quiet until 02:30, which does not exist in New York on 2026-03-08: the clock goes 01:59:59
    # EST -> 03:00 EDT, and 03:00 EDT is the first instant outside quiet hours.
    late = quiet("22:00", "02:30")
    assert quiet_hours_end(at(2026, 3, 8, 5), NY, late) == at(2026, 3, 8, 7)


def test_quiet_hours_ending_on_an_ambiguous_time_take_the_next_one():
    early = quiet("21:00", "01:30")
    # 01:15 EDT (first pass) -> 01:30 EDT; 01:15 EST (second pass) -> 01:30 EST.
    assert quiet_hours_end(at(2026, 11, 1, 5, 15), NY, early) == at(2026, 11, 1, 5, 30)
    assert quiet_hours_end(at(2026, 11, 1, 6, 15), NY, early) == at(2026, 11, 1, 6, 30)


ZONES = [NY, ROME, "UTC", "Australia/Lord_Howe", "Asia/Kolkata", "America/St_Johns"]


@settings(max_examples=300, deadline=None)
@given(instant=st.datetimes(min_value=at(2025, 12, 1).replace(tzinfo=None),
                            max_value=at(2027, 2, 1).replace(tzinfo=None), timezones=st.just(UTC)),
       tz=st.sampled_from(ZONES),
       start=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
       end=st.times().map(lambda t: t.replace(second=0, microsecond=0)))
def test_quiet_hours_end_is_the_first_instant_outside(instant, tz, start, end):
    window = quiet(start.isoformat(), end.isoformat())
    out = quiet_hours_end(instant, tz, window)
    assert out >= instant
    assert not in_quiet_hours(out, tz, window)
    if out > instant:   # one second earlier the customer was still in quiet hours
        assert in_quiet_hours(out - timedelta(seconds=1), tz, window)


# ---------------------------------------------------------------- next wall time

@pytest.mark.parametrize("instant, tz, expected", [
    (at(2026, 3, 8, 5), NY, at(2026, 3, 8, 14)),       # 00:00 EST -> 10:00 EDT
    (at(2026, 3, 7, 16), NY, at(2026, 3, 8, 14)),      # 11:00 EST the day before
    (at(2026, 11, 1, 4), NY, at(2026, 11, 1, 15)),     # 00:00 EDT -> 10:00 EST
    (at(2026, 10, 31, 15), NY, at(2026, 11, 1, 15)),   # 11:00 EDT the day before
    (at(2026, 3, 29, 0), ROME, at(2026, 3, 29, 8)),    # 01:00 CET -> 10:00 CEST
    (at(2026, 3, 28, 10), ROME, at(2026, 3, 29, 8)),   # 11:00 CET the day before
    (at(2026, 10, 24, 23), ROME, at(2026, 10, 25, 9)),  # 01:00 CEST -> 10:00 CET
    (at(2026, 10, 24, 9), ROME, at(2026, 10, 25, 9)),  # 11:00 CEST the day before
])
def test_next_ten_oclock_across_the_change(instant, tz, expected):
    out = next_wall_time(instant, time(10, 0), tz)
    assert out == expected
    assert out.tzinfo is UTC
    assert local(out, tz).time() == time(10, 0)


def test_a_wall_time_already_reached_is_the_instant_itself_and_passed_means_tomorrow():
    ten_rome = at(2026, 11, 23, 9)
    assert next_wall_time(ten_rome, time(10, 0), ROME) == ten_rome
    assert next_wall_time(ten_rome + timedelta(seconds=1), time(10, 0), ROME) == at(2026, 11, 24, 9)


@pytest.mark.parametrize("instant, tz, expected", [
    (at(2026, 3, 8, 5), NY, at(2026, 3, 8, 7)),        # 02:30 does not exist: 03:00 EDT
    (at(2026, 3, 28, 23), ROME, at(2026, 3, 29, 1)),   # 02:30 does not exist: 03:00 CEST
])
def test_a_nonexistent_wall_time_moves_to_the_end_of_the_gap(instant, tz, expected):
    out = next_wall_time(instant, time(2, 30), tz)
    assert out == expected
    assert local(out, tz).time() == time(3, 0)


@pytest.mark.parametrize("instant, tz, at_, expected", [
    (at(2026, 11, 1, 4), NY, time(1, 30), at(2026, 11, 1, 5, 30)),       # 01:30 EDT, not EST
    (at(2026, 10, 24, 22), ROME, time(2, 30), at(2026, 10, 25, 0, 30)),  # 02:30 CEST, not CET
])
def test_an_ambiguous_wall_time_takes_the_first_occurrence(instant, tz, at_, expected):
    assert next_wall_time(instant, at_, tz) == expected


def test_ten_oclock_is_ten_oclock_every_day_of_the_year():
    for tz in (NY, ROME):
        zone = ZoneInfo(tz)
        day = date(2026, 1, 1)
        while day.year == 2026:
            midnight = wall_instants(day, time(0, 0), zone)[0]
            out = next_wall_time(midnight, time(10, 0), tz)
            assert local(out, tz).replace(tzinfo=None).isoformat() == f"{day.isoformat()}T10:00:00"
            day += timedelta(days=1)


def test_wall_instants_counts_one_two_or_the_gap_end():
    assert wall_instants(date(2026, 6, 1), time(10, 0), NY) == [at(2026, 6, 1, 14)]
    assert wall_instants(date(2026, 11, 1), time(1, 30), NY) == [at(2026, 11, 1, 5, 30),
                                                                 at(2026, 11, 1, 6, 30)]
    assert wall_instants(date(2026, 3, 8), time(2, 0), NY) == [at(2026, 3, 8, 7)]


# ---------------------------------------------------------------- the memo

SWEEP_ZONES = [NY, ROME, "Australia/Sydney", "Australia/Lord_Howe", "America/St_Johns", "Asia/Kolkata",
               "Pacific/Apia", "UTC"]
# Each zone's 2026 changes (Apia: none since 2021; Kolkata and UTC: none at all).
SWEEP_DAYS = [date(2026, 3, 8), date(2026, 11, 1), date(2026, 3, 29), date(2026, 10, 25),
              date(2026, 4, 5), date(2026, 10, 4), date(2026, 6, 15)]
WINDOWS = [NIGHT, quiet("22:00", "02:30"), quiet("21:00", "01:30"), quiet("13:00", "15:00"),
           quiet("01:30", "03:00"), None]
AT_TIMES = [time(10, 0), time(2, 30), time(1, 30), time(0, 0), time(23, 59, 59)]


def _sweep():
    """Instants every 37 minutes over two days around each change: odd steps hit every minute."""
    for day in SWEEP_DAYS:
        start = at(day.year, day.month, day.day) - timedelta(days=1)
        for n in range(0, 3 * 24 * 60, 37):
            yield start + timedelta(minutes=n)


@pytest.mark.parametrize("tz", SWEEP_ZONES)
def test_memoized_answers_are_the_worked_out_ones(tz):
    from postsale.timing import _next_wall_time, _quiet_hours_end
    zone_ = ZoneInfo(tz)
    for instant in _sweep():
        for window in WINDOWS:
            expected = _quiet_hours_end(instant, zone_, window)
            assert quiet_hours_end(instant, tz, window) == expected
            assert quiet_hours_end(instant, zone_, window) == expected      # now from the memo
        for at_ in AT_TIMES:
            expected = _next_wall_time(instant, at_, zone_)
            assert next_wall_time(instant, at_, tz) == expected
            assert next_wall_time(instant, at_, zone_) == expected


@pytest.mark.parametrize("tz", [NY, ROME])
def test_the_memo_tells_the_two_occurrences_of_an_ambiguous_time_apart(tz):
    """01:30 fold=0 and fold=1 in one zone compare and hash equal, an hour apart: keyed in UTC."""
    from postsale.timing import _next_wall_time, _quiet_hours_end
    zone_ = ZoneInfo(tz)
    day = date(2026, 11, 1) if tz == NY else date(2026, 10, 25)
    wall = datetime.combine(day, time(1, 30) if tz == NY else time(2, 30)).replace(tzinfo=zone_)
    first, second = wall.replace(fold=0), wall.replace(fold=1)
    assert first == second and first.astimezone(UTC) != second.astimezone(UTC)
    for window in WINDOWS:
        for instant in (first, second, first, second):
            assert quiet_hours_end(instant, tz, window) == _quiet_hours_end(instant, zone_, window)
    for at_ in AT_TIMES:
        for instant in (first, second, first, second):
            assert next_wall_time(instant, at_, tz) == _next_wall_time(instant, at_, zone_)


def test_the_memo_answers_in_utc_and_refuses_naive_instants():
    instant = at(2026, 11, 23, 12)
    assert quiet_hours_end(instant, ROME, NIGHT).tzinfo is UTC
    assert next_wall_time(instant.astimezone(ZoneInfo(ROME)), time(10, 0), ROME).tzinfo is UTC
    with pytest.raises(ValueError):
        next_wall_time(instant.replace(tzinfo=None), time(10, 0), ROME)
    with pytest.raises(ValueError):
        quiet_hours_end(instant.replace(tzinfo=None), ROME, NIGHT)

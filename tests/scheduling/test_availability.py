"""Availability expansion: a brute-force wall-clock oracle, the DST days of SPEC §5, overrides."""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closerdesk.scheduling.availability import (
    DateOverride,
    LocalWindow,
    Schedule,
    Weekday,
    WeeklyWindow,
    expand,
    expand_windows,
    format_hhmm,
    free_time,
    local_to_utc,
    parse_hhmm,
)
from closerdesk.scheduling.intervals import Interval
from tests.scheduling.helpers import (
    ZONES,
    local_windows,
    ranges_near_transitions,
    utc,
    weekly_windows,
    z,
)

UTC_MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)

# ---------------------------------------------------------------------------------- the oracle


def _windows_on(
    day: date, weekly: list[WeeklyWindow], overrides: dict[date, list[LocalWindow]]
) -> list[tuple[int, int]]:
    if day in overrides:
        return [(w.start_minute, w.end_minute) for w in overrides[day]]
    return [(w.start_minute, w.end_minute) for w in weekly if w.weekday == day.weekday()]


def oracle_minutes(
    zone_name: str,
    weekly: list[WeeklyWindow],
    overrides: dict[date, list[LocalWindow]],
    start: datetime,
    end: datetime,
) -> set[datetime]:
    """Available UTC minutes by the documented rule, computed by brute force: a window of local
    date D opens at the first instant the wall clock shows >= D start, and closes at the first
    instant it shows >= D end (wall times read minute by minute from tzdata)."""
    zone = z(zone_name)
    lo = start - timedelta(days=3)
    n = int((end - start) / UTC_MINUTE) + 6 * 1440
    instants = [lo + i * UTC_MINUTE for i in range(n)]
    walls = [u.astimezone(zone).replace(tzinfo=None) for u in instants]
    running_max = list(accumulate(walls, max))  # non-decreasing, so bisect finds "first >="

    def first_at_or_after(local: datetime) -> int:
        return bisect_left(running_max, local)

    covered: set[datetime] = set()
    day = start.astimezone(zone).date() - timedelta(days=2)
    last = end.astimezone(zone).date() + timedelta(days=2)
    while day <= last:
        midnight = datetime(day.year, day.month, day.day)
        for s, e in _windows_on(day, weekly, overrides):
            a = first_at_or_after(midnight + s * UTC_MINUTE)
            b = first_at_or_after(midnight + e * UTC_MINUTE)
            covered.update(u for u in instants[a:b] if start <= u < end)
        day += timedelta(days=1)
    return covered


def minutes_of(intervals: list[Interval]) -> set[datetime]:
    out: set[datetime] = set()
    for i in intervals:
        u = i.start
        while u < i.end:
            out.add(u)
            u += UTC_MINUTE
    return out


# ------------------------------------------------------------------------------- strategies


@st.composite
def schedules_and_ranges(
    draw: st.DrawFn,
) -> tuple[Schedule, list[WeeklyWindow], dict[date, list[LocalWindow]], datetime, datetime]:
    zone_name = draw(st.sampled_from(ZONES))
    weekly = draw(weekly_windows())
    start, end = draw(ranges_near_transitions(zone_name))
    local_days = [start.astimezone(z(zone_name)).date() + timedelta(days=k) for k in range(-1, 5)]
    override_days = draw(st.lists(st.sampled_from(local_days), unique=True, max_size=3))
    overrides = {d: draw(st.lists(local_windows(), max_size=3)) for d in override_days}
    schedule = Schedule(
        zone_name,
        tuple(weekly),
        tuple(DateOverride(d, tuple(ws)) for d, ws in overrides.items()),
    )
    return schedule, weekly, overrides, start, end


# ---------------------------------------------------------------------------- property tests


@settings(max_examples=250, deadline=None)
@given(schedules_and_ranges())
def test_expand_matches_the_wall_clock_oracle(
    case: tuple[Schedule, list[WeeklyWindow], dict[date, list[LocalWindow]], datetime, datetime],
) -> None:
    schedule, weekly, overrides, start, end = case
    result = expand(schedule, start, end)
    assert minutes_of(result) == oracle_minutes(schedule.time_zone, weekly, overrides, start, end)
    for a, b in pairwise(result):
        assert a.end < b.start  # merged: sorted, disjoint, non-touching
    for i in result:
        assert start <= i.start
        assert i.end <= end
        assert i.start.utcoffset() == timedelta(0)


@settings(max_examples=150, deadline=None)
@given(schedules_and_ranges())
def test_expand_windows_are_the_unclipped_pieces_of_expand(
    case: tuple[Schedule, list[WeeklyWindow], dict[date, list[LocalWindow]], datetime, datetime],
) -> None:
    schedule, _, _, start, end = case
    windows = expand_windows(schedule, start, end)
    for a, b in pairwise(windows):
        assert a.end <= b.start  # disjoint (may touch at midnight)
    assert all(w.start < end and start < w.end for w in windows)
    clipped = [Interval(max(w.start, start), min(w.end, end)) for w in windows]
    assert minutes_of(clipped) == minutes_of(expand(schedule, start, end))
    # Each window is one local window of one local date: its start is where that window's
    # local start resolves (the local date may be the next one when the start is in a gap).
    zone = schedule.zone
    for w in windows:
        local_day = w.start.astimezone(zone).date()
        assert any(
            local_to_utc(datetime(d.year, d.month, d.day) + s * UTC_MINUTE, zone) == w.start
            for d in (local_day, local_day - timedelta(days=1))
            for s, _ in schedule.windows_on(d)
        )


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES), st.datetimes(datetime(2000, 1, 1), datetime(2035, 12, 31)))
def test_local_to_utc_is_the_first_instant_showing_that_wall_time(
    zone_name: str, local: datetime
) -> None:
    zone = z(zone_name)
    local = local.replace(second=0, microsecond=0)
    instant = local_to_utc(local, zone)
    assert instant.tzinfo is not None
    # The wall clock at the answer shows the time, or (in a gap) the first time after it.
    shown = instant.astimezone(zone).replace(tzinfo=None)
    assert shown >= local
    # One minute earlier the wall clock showed an earlier time: nothing before it qualifies
    # (every transition in 2000–2035 falls on a whole minute).
    assert (instant - UTC_MINUTE).astimezone(zone).replace(tzinfo=None) < local
    if shown != local:  # a gap: the answer is a transition instant
        before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
        assert before != instant.astimezone(zone).utcoffset()


# ------------------------------------------------------------------- the DST days of SPEC §5


def day_schedule(zone: str, day: date, start: str, end: str) -> Schedule:
    """Weekly 09:00–17:00 every day, with ``day`` overridden to ``start``–``end``."""
    every_day = tuple(WeeklyWindow(d, 9 * 60, 17 * 60) for d in Weekday)
    return Schedule(zone, every_day, (DateOverride(day, (LocalWindow.parse(start, end),)),))


def on_day(schedule: Schedule, day: date) -> list[Interval]:
    """The schedule's windows of local date ``day`` (a generous UTC range, filtered)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    return [
        w
        for w in expand_windows(schedule, start, start + timedelta(days=3))
        if w.start.astimezone(schedule.zone).date() == day
    ]


NINE_TO_FIVE = [
    # zone, the DST day, 09:00 and 17:00 of that day in UTC
    ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 13), utc(2026, 3, 8, 21)),
    ("America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 14), utc(2026, 11, 1, 22)),
    ("Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 29, 7), utc(2026, 3, 29, 15)),
    ("Europe/Berlin", date(2026, 10, 25), utc(2026, 10, 25, 8), utc(2026, 10, 25, 16)),
]


@pytest.mark.parametrize(("zone", "day", "start", "end"), NINE_TO_FIVE)
def test_nine_to_five_is_eight_real_hours_on_dst_days(
    zone: str, day: date, start: datetime, end: datetime
) -> None:
    schedule = Schedule(zone, tuple(WeeklyWindow(d, 9 * 60, 17 * 60) for d in Weekday))
    assert on_day(schedule, day) == [Interval(start, end)]
    # The day before is on the other offset: the same local hours, one hour apart in UTC.
    before = on_day(schedule, day - timedelta(days=1))
    assert len(before) == 1
    assert abs(before[0].start + timedelta(days=1) - start) == HOUR
    assert before[0].end - before[0].start == 8 * HOUR


ONE_TO_THREE = [
    # Fall back: 01:00 (first pass, summer time) → 03:00 (winter time) lasts 3 real hours.
    ("America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 5), utc(2026, 11, 1, 8)),
    ("Europe/Berlin", date(2026, 10, 25), utc(2026, 10, 24, 23), utc(2026, 10, 25, 2)),
    # Spring forward: the hour 02:00–03:00 does not exist, so 01:00–03:00 is 1 real hour.
    ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 6), utc(2026, 3, 8, 7)),
    ("Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 29, 0), utc(2026, 3, 29, 1)),
]


@pytest.mark.parametrize(("zone", "day", "start", "end"), ONE_TO_THREE)
def test_one_to_three_on_dst_days(zone: str, day: date, start: datetime, end: datetime) -> None:
    assert on_day(day_schedule(zone, day, "01:00", "03:00"), day) == [Interval(start, end)]


START_IN_GAP = [
    # 02:30 does not exist; the window starts at the jump (03:00 summer time) and ends 04:00.
    ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)),
    ("Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)),
]


@pytest.mark.parametrize(("zone", "day", "start", "end"), START_IN_GAP)
def test_window_starting_in_the_spring_forward_gap(
    zone: str, day: date, start: datetime, end: datetime
) -> None:
    assert on_day(day_schedule(zone, day, "02:30", "04:00"), day) == [Interval(start, end)]


def test_window_wholly_inside_the_gap_is_empty() -> None:
    day = date(2026, 3, 8)
    schedule = day_schedule("America/New_York", day, "02:00", "02:45")
    assert on_day(schedule, day) == []
    assert expand(schedule, utc(2026, 3, 8, 0), utc(2026, 3, 8, 12)) == []


def test_nonexistent_local_time_maps_to_the_jump() -> None:
    assert local_to_utc(datetime(2026, 3, 8, 2, 30), z("America/New_York")) == utc(2026, 3, 8, 7)
    assert local_to_utc(datetime(2026, 3, 29, 2, 30), z("Europe/Berlin")) == utc(2026, 3, 29, 1)
    # Lord Howe's gap is 30 minutes (02:00 → 02:30 on 2026-10-04).
    assert local_to_utc(datetime(2026, 10, 4, 2, 10), z("Australia/Lord_Howe")) == local_to_utc(
        datetime(2026, 10, 4, 2, 30), z("Australia/Lord_Howe")
    )
    # Apia skipped 2011-12-30 entirely: any time of it maps to 2011-12-31 00:00 local.
    assert local_to_utc(datetime(2011, 12, 30, 12), z("Pacific/Apia")) == utc(2011, 12, 30, 10)


def test_ambiguous_local_time_maps_to_its_first_occurrence() -> None:
    # 01:30 happens twice on 2026-11-01 in New York: 05:30Z (EDT) and 06:30Z (EST).
    assert local_to_utc(datetime(2026, 11, 1, 1, 30), z("America/New_York")) == utc(
        2026, 11, 1, 5, 30
    )
    # 02:30 happens twice on 2026-10-25 in Berlin: 00:30Z (CEST) and 01:30Z (CET).
    assert local_to_utc(datetime(2026, 10, 25, 2, 30), z("Europe/Berlin")) == utc(
        2026, 10, 25, 0, 30
    )


def test_window_inside_the_repeated_hour_happens_once() -> None:
    day = date(2026, 11, 1)
    ny = "America/New_York"
    # 01:00–01:30 on the first pass only; 00:00–01:30 ends at the first 01:30.
    assert on_day(day_schedule(ny, day, "01:00", "01:30"), day) == [
        Interval(utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 30))
    ]
    assert on_day(day_schedule(ny, day, "00:00", "01:30"), day) == [
        Interval(utc(2026, 11, 1, 4), utc(2026, 11, 1, 5, 30))
    ]
    # A window starting in the repeated hour keeps its true elapsed length: 01:30–02:30 is
    # 01:30 EDT → 02:30 EST, 2 real hours.
    assert on_day(day_schedule(ny, day, "01:30", "02:30"), day) == [
        Interval(utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7, 30))
    ]


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("Europe/Berlin", date(2026, 3, 29), 23),
        ("Europe/Berlin", date(2026, 10, 25), 25),
    ],
)
def test_whole_day_has_its_real_length(zone: str, day: date, hours: int) -> None:
    windows = on_day(day_schedule(zone, day, "00:00", "24:00"), day)
    assert len(windows) == 1
    assert windows[0].end - windows[0].start == hours * HOUR


# ------------------------------------------------------------------ weekly, overrides, clipping


def test_weekly_schedule_in_its_zone_and_clipping() -> None:
    schedule = Schedule("America/New_York", (WeeklyWindow.parse("monday", "09:00", "17:00"),))
    # Monday 2027-03-15 (EDT): 13:00Z–21:00Z; the range cuts it.
    assert expand(schedule, utc(2027, 3, 15, 15), utc(2027, 3, 22, 0)) == [
        Interval(utc(2027, 3, 15, 15), utc(2027, 3, 15, 21))
    ]
    assert expand(schedule, utc(2027, 3, 16), utc(2027, 3, 15)) == []


def test_override_replaces_the_weekday_and_empty_means_day_off() -> None:
    weekly = tuple(WeeklyWindow(d, 9 * 60, 17 * 60) for d in Weekday)
    schedule = Schedule(
        "Europe/Berlin",
        weekly,
        (
            DateOverride(date(2026, 12, 24)),
            DateOverride(date(2026, 12, 23), (LocalWindow.parse("10:00", "12:00"),)),
        ),
    )
    result = expand(schedule, utc(2026, 12, 23), utc(2026, 12, 26))
    assert result == [
        Interval(utc(2026, 12, 23, 9), utc(2026, 12, 23, 11)),
        Interval(utc(2026, 12, 25, 8), utc(2026, 12, 25, 16)),
    ]


def test_windows_join_across_midnight_and_within_a_day() -> None:
    schedule = Schedule(
        "UTC",
        (
            WeeklyWindow.parse("monday", "22:00", "24:00"),
            WeeklyWindow.parse("tuesday", "00:00", "02:00"),
            WeeklyWindow.parse("tuesday", "09:00", "12:00"),
            WeeklyWindow.parse("tuesday", "11:00", "13:00"),
        ),
    )
    start = utc(2026, 1, 5)  # a Monday
    assert expand(schedule, start, start + timedelta(days=2)) == [
        Interval(utc(2026, 1, 5, 22), utc(2026, 1, 6, 2)),
        Interval(utc(2026, 1, 6, 9), utc(2026, 1, 6, 13)),
    ]
    # expand_windows keeps one piece per local date (the grid anchors).
    assert expand_windows(schedule, start, start + timedelta(days=2)) == [
        Interval(utc(2026, 1, 5, 22), utc(2026, 1, 6, 0)),
        Interval(utc(2026, 1, 6, 0), utc(2026, 1, 6, 2)),
        Interval(utc(2026, 1, 6, 9), utc(2026, 1, 6, 13)),
    ]


def test_free_time_is_availability_minus_buffered_busy() -> None:
    schedule = Schedule("UTC", (WeeklyWindow.parse("monday", "09:00", "17:00"),))
    busy = [Interval(utc(2026, 1, 5, 12), utc(2026, 1, 5, 13))]
    free = free_time(
        schedule,
        busy,
        utc(2026, 1, 5),
        utc(2026, 1, 6),
        buffer_before_minutes=10,
        buffer_after_minutes=15,
    )
    # A booking may end by 11:45 (its 15-minute after-buffer then ends at 12:00) and start
    # from 13:10 (its 10-minute before-buffer starts at 13:00).
    assert free == [
        Interval(utc(2026, 1, 5, 9), utc(2026, 1, 5, 11, 45)),
        Interval(utc(2026, 1, 5, 13, 10), utc(2026, 1, 5, 17)),
    ]


def test_parsing_and_validation() -> None:
    assert parse_hhmm("09:05") == 545
    assert parse_hhmm("24:00", allow_24=True) == 1440
    assert format_hhmm(1440) == "24:00"
    assert format_hhmm(545) == "09:05"
    for bad in ["24:00", "9:00", "12:60", "", "ab:cd", "24:01"]:
        with pytest.raises(ValueError, match="HH:MM"):
            parse_hhmm(bad)
    with pytest.raises(ValueError, match="24:01"):
        parse_hhmm("24:01", allow_24=True)
    assert WeeklyWindow.parse("Friday", "09:00", "24:00") == WeeklyWindow(Weekday.FRIDAY, 540, 1440)
    with pytest.raises(ValueError, match="weekday"):
        WeeklyWindow.parse("funday", "09:00", "10:00")
    with pytest.raises(ValueError, match="start < end"):
        LocalWindow.parse("10:00", "10:00")
    with pytest.raises(ValueError, match="time zone"):
        Schedule("Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="two overrides"):
        Schedule("UTC", (), (DateOverride(date(2026, 1, 1)), DateOverride(date(2026, 1, 1))))
    with pytest.raises(ValueError, match="naive"):
        expand(Schedule("UTC"), datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="naive"):
        local_to_utc(utc(2026, 1, 1), z("UTC"))

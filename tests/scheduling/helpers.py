"""Shared strategies and brute-force oracles for the scheduling tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from closerdesk.scheduling.availability import LocalWindow, Weekday, WeeklyWindow
from closerdesk.scheduling.intervals import Interval

BASE = datetime(2026, 1, 5, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def at(minute: int) -> datetime:
    """``BASE`` plus whole minutes."""
    return BASE + minute * MINUTE


def iv(start_minute: int, end_minute: int) -> Interval:
    return Interval(at(start_minute), at(end_minute))


def minute_of(value: datetime) -> int:
    """Whole minutes after ``BASE``; fails on a value off the minute grid."""
    delta = value - BASE
    assert delta % MINUTE == timedelta(0), value
    return delta // MINUTE


def cells(intervals: Iterable[Interval]) -> set[int]:
    """The minutes covered, as a set of minute indices (exact for minute-grid intervals)."""
    out: set[int] = set()
    for i in intervals:
        out.update(range(minute_of(i.start), minute_of(i.end)))
    return out


def assert_canonical(intervals: list[Interval]) -> None:
    """Sorted, disjoint and non-touching: the shape every merged answer has."""
    for a, b in pairwise(intervals):
        assert a.end < b.start, (a, b)


@st.composite
def minute_intervals(draw: st.DrawFn, horizon: int = 400, longest: int = 90) -> Interval:
    start = draw(st.integers(0, horizon))
    return iv(start, start + draw(st.integers(1, longest)))


interval_lists = st.lists(minute_intervals(), max_size=12)


# ----------------------------------------------------------------------- zones and schedules

UTC_MINUTE = timedelta(minutes=1)


def z(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# Zones with the awkward cases: northern and southern DST, 30-minute DST (Lord Howe), DST at
# midnight (Santiago, Beirut), odd offsets (St John's, Kathmandu), a skipped day in 2011 (Apia).
ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Europe/London",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Beirut",
    "America/St_Johns",
    "Asia/Kathmandu",
    "Asia/Kolkata",
    "Pacific/Apia",
    "UTC",
]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def transition_days(zone: ZoneInfo, years: range) -> list[date]:
    """Local dates whose UTC offset at the end differs from the one at the start."""
    out = []
    day = date(years.start, 1, 1)
    while day.year < years.stop:
        start = datetime(day.year, day.month, day.day, tzinfo=zone).utcoffset()
        nxt = day + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).utcoffset()
        if start != end:
            out.append(day)
        day = nxt
    return out


TRANSITIONS = {name: transition_days(z(name), range(2026, 2027)) for name in ZONES}
TRANSITIONS["Pacific/Apia"] += [date(2011, 12, 29), date(2011, 12, 31)]


interesting_minute = st.one_of(
    st.integers(0, 1439),
    st.sampled_from([0, 30, 45, 60, 90, 120, 135, 150, 180, 210, 1380, 1410, 1425]),
)


@st.composite
def local_windows(draw: st.DrawFn) -> LocalWindow:
    start = draw(interesting_minute)
    end = draw(st.one_of(st.integers(start + 1, 1440), st.sampled_from([1440])))
    return LocalWindow(start, max(end, start + 1))


@st.composite
def weekly_windows(draw: st.DrawFn) -> list[WeeklyWindow]:
    if draw(st.booleans()):  # every day the same windows: DST days always get some
        windows = draw(st.lists(local_windows(), min_size=1, max_size=3))
        return [WeeklyWindow(day, w.start_minute, w.end_minute) for day in Weekday for w in windows]
    return [
        WeeklyWindow(draw(st.sampled_from(list(Weekday))), w.start_minute, w.end_minute)
        for w in draw(st.lists(local_windows(), max_size=8))
    ]


@st.composite
def ranges_near_transitions(draw: st.DrawFn, zone_name: str) -> tuple[datetime, datetime]:
    days = TRANSITIONS[zone_name]
    if days and draw(st.integers(0, 4)) > 0:
        day = draw(st.sampled_from(days))
    else:
        day = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 364)))
    anchor = datetime(day.year, day.month, day.day, tzinfo=UTC)
    start = anchor + draw(st.integers(-36 * 60, 24 * 60)) * UTC_MINUTE
    return start, start + draw(st.integers(1, 3 * 1440)) * UTC_MINUTE

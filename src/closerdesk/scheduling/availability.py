"""Availability: a host's weekly schedule in an IANA zone, expanded to UTC. Pure, no I/O.

Rule source: docs/api.md "Availability" — per host a weekly schedule in the host's IANA zone
(weekday, local start, local end) plus date overrides; free = availability − busy (calls +
calendar busy + buffers). Expand per *local date*, then convert to UTC, so DST changes land on
the right day.

Local wall time → UTC (``local_to_utc``), the one rule every conversion here follows:

* An ordinary local time has one instant.
* A **nonexistent** local time (inside a spring-forward gap, e.g. 02:30 on 2026-03-08 in
  America/New_York) maps to the first real instant after the gap, i.e. the transition instant
  (03:00 EDT = 07:00Z). A window starting in the gap therefore starts when the clocks jump; a
  window lying wholly inside the gap is empty and dropped.
* An **ambiguous** local time (the repeated hour of a fall-back, e.g. 01:30 on 2026-11-01 in
  America/New_York) maps to its *first* occurrence (``fold=0``, 01:30 EDT = 05:30Z), for starts
  and ends alike: a window opens the first time the wall clock shows its start and closes the
  first time it shows its end. Windows keep their true elapsed length: 01:00–03:00 on a
  fall-back day lasts 3 real hours (05:00Z–08:00Z in New York), 01:00–03:00 on a spring-forward
  day 1 real hour, 09:00–17:00 on either day 8 hours. A window lying wholly inside the repeated
  hour happens once, on the first pass.

The mapping is monotonic, so windows of one date never cross, and windows of consecutive dates
meet at most at midnight ("24:00" of one date is 00:00 of the next).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from zoneinfo import ZoneInfo

from closerdesk.scheduling._spans import (
    MINUTE_US,
    Span,
    from_us,
    intersect_spans,
    intervals_of,
    merge_spans,
    pad_spans,
    spans_of,
    subtract_spans,
    to_us,
)
from closerdesk.scheduling.intervals import Interval

MINUTES_PER_DAY = 24 * 60
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ONE_DAY = timedelta(days=1)


class Weekday(IntEnum):
    """ISO weekday, numbered like :meth:`datetime.date.weekday` (Monday = 0)."""

    MONDAY = 0
    TUESDAY = 1
    WEDNESDAY = 2
    THURSDAY = 3
    FRIDAY = 4
    SATURDAY = 5
    SUNDAY = 6

    @classmethod
    def from_name(cls, name: str) -> Weekday:
        """``"monday"`` … ``"sunday"`` (any case) → ``Weekday``; anything else ``ValueError``."""
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown weekday {name!r}") from None


def parse_hhmm(text: str, *, allow_24: bool = False) -> int:
    """``"HH:MM"`` (00:00–23:59, and ``"24:00"`` when ``allow_24``) → minutes after local midnight.

    Raises ``ValueError`` for anything else (``"9:00"``, ``"24:01"``, ``"12:60"``).
    """
    if allow_24 and text == "24:00":
        return MINUTES_PER_DAY
    match = _HHMM.match(text)
    if match is None:
        raise ValueError(f"expected HH:MM, got {text!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


def format_hhmm(minute: int) -> str:
    """Minutes after local midnight (0–1440) → ``"HH:MM"``; 1440 gives ``"24:00"``."""
    if not 0 <= minute <= MINUTES_PER_DAY:
        raise ValueError(f"minute {minute} outside 0..1440")
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True, order=True)
class LocalWindow:
    """Local wall-clock window of one date: ``[start_minute, end_minute)`` minutes after midnight.

    ``0 <= start_minute < end_minute <= 1440``; 1440 is "24:00" (the next midnight). Windows do
    not cross midnight: write 22:00–02:00 as 22:00–24:00 plus 00:00–02:00 the next day (the two
    join in the expanded availability).
    """

    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < self.end_minute <= MINUTES_PER_DAY:
            raise ValueError(
                f"window {self.start_minute}..{self.end_minute}: need 0 <= start < end <= 1440"
            )

    @classmethod
    def parse(cls, start: str, end: str) -> LocalWindow:
        """``LocalWindow.parse("09:00", "17:00")``; ``end`` may be ``"24:00"``."""
        return cls(parse_hhmm(start), parse_hhmm(end, allow_24=True))


@dataclass(frozen=True)
class WeeklyWindow:
    """A recurring window: every ``weekday``, local ``[start_minute, end_minute)`` (see
    :class:`LocalWindow` for the bounds)."""

    weekday: Weekday
    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "weekday", Weekday(self.weekday))
        LocalWindow(self.start_minute, self.end_minute)  # validates the bounds

    @classmethod
    def parse(cls, weekday: str, start: str, end: str) -> WeeklyWindow:
        """``WeeklyWindow.parse("monday", "09:00", "17:00")`` (docs/api.md: ``weekly``)."""
        return cls(Weekday.from_name(weekday), parse_hhmm(start), parse_hhmm(end, allow_24=True))

    @property
    def local(self) -> LocalWindow:
        """The window without its weekday."""
        return LocalWindow(self.start_minute, self.end_minute)


@dataclass(frozen=True)
class DateOverride:
    """On local ``date``, these windows replace the weekly ones; no windows = a day off."""

    date: date
    windows: tuple[LocalWindow, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(self.windows))


def _merged_minutes(windows: Iterable[LocalWindow]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for w in sorted(windows):
        if merged and w.start_minute <= merged[-1][1]:
            if w.end_minute > merged[-1][1]:
                merged[-1] = (merged[-1][0], w.end_minute)
        else:
            merged.append((w.start_minute, w.end_minute))
    return tuple(merged)


@dataclass(frozen=True)
class Schedule:
    """A host's availability: weekly windows in IANA zone ``time_zone``, plus date overrides.

    docs/api.md's ``schedule``: ``{"time_zone", "weekly": [{weekday, start, end}],
    "overrides": [{date, intervals}]}``. Overlapping or touching windows of one day are joined.
    Raises ``ValueError`` for an unknown zone or two overrides of the same date.
    """

    time_zone: str
    weekly: tuple[WeeklyWindow, ...] = ()
    overrides: tuple[DateOverride, ...] = ()
    # Derived once, read by expand_windows: the zone, per-weekday and per-date merged minutes.
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _by_weekday: tuple[tuple[tuple[int, int], ...], ...] = field(
        init=False, repr=False, compare=False
    )
    _by_date: Mapping[date, tuple[tuple[int, int], ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.time_zone)
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError for odd keys
            raise ValueError(f"unknown time zone {self.time_zone!r}") from exc
        by_date: dict[date, tuple[tuple[int, int], ...]] = {}
        for override in self.overrides:
            if override.date in by_date:
                raise ValueError(f"two overrides for {override.date.isoformat()}")
            by_date[override.date] = _merged_minutes(override.windows)
        by_weekday = tuple(
            _merged_minutes(w.local for w in self.weekly if w.weekday == day) for day in Weekday
        )
        object.__setattr__(self, "weekly", tuple(self.weekly))
        object.__setattr__(self, "overrides", tuple(self.overrides))
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_by_weekday", by_weekday)
        object.__setattr__(self, "_by_date", by_date)

    @property
    def zone(self) -> ZoneInfo:
        """The ``ZoneInfo`` of ``time_zone``."""
        return self._zone

    def windows_on(self, day: date) -> tuple[tuple[int, int], ...]:
        """Local ``(start_minute, end_minute)`` windows of ``day``, merged and sorted: the
        override when there is one, else the weekly windows of its weekday."""
        override = self._by_date.get(day)
        if override is not None:
            return override
        return self._by_weekday[day.weekday()]


def _offset(value: datetime) -> timedelta:
    offset = value.utcoffset()
    if offset is None:  # ZoneInfo always answers; a defensive check, not an expected path
        raise ValueError(f"no UTC offset for {value!r}")
    return offset


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of naive local wall time ``local`` in ``zone`` (aware UTC datetime).

    Nonexistent (spring-forward gap) → the first real instant after the gap; ambiguous
    (fall-back repeat) → the first occurrence (``fold=0``). See the module docstring.
    """
    if local.tzinfo is not None:
        raise ValueError("local_to_utc takes a naive wall-clock datetime")
    off_first = _offset(local.replace(tzinfo=zone, fold=0))
    off_second = _offset(local.replace(tzinfo=zone, fold=1))
    if off_first >= off_second:
        # Ordinary (equal offsets) or ambiguous (fold=0 has the larger offset = earlier instant).
        return (local - off_first).replace(tzinfo=UTC)
    # Nonexistent: fold=0 read the time with the pre-gap offset (an instant after the jump),
    # fold=1 with the post-gap one (an instant before it). Bisect for the jump, to the second
    # (zone transitions fall on whole seconds).
    lo = to_us(local.replace(tzinfo=UTC) - off_second)  # before the transition
    hi = to_us(local.replace(tzinfo=UTC) - off_first)  # at or after the transition
    step = 1_000_000
    lo_s, hi_s = lo // step, -(-hi // step)
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset(from_us(mid * step).astimezone(zone)) == off_second:
            hi_s = mid
        else:
            lo_s = mid
    return from_us(hi_s * step)


def _check_range(start_utc: datetime, end_utc: datetime) -> tuple[int, int]:
    return to_us(start_utc), to_us(end_utc)


def window_spans(schedule: Schedule, start_us: int, end_us: int) -> list[Span]:
    """:func:`expand_windows` on integer microseconds (``_spans``): the fast path slot
    generation uses. Per-local-date windows overlapping ``[start_us, end_us)``, unclipped."""
    if end_us <= start_us:
        return []
    zone = schedule.zone
    first_day = from_us(start_us).astimezone(zone).date() - _ONE_DAY
    last_day = from_us(end_us).astimezone(zone).date() + _ONE_DAY
    out: list[Span] = []
    day = first_day
    midnight_time = time()
    while day <= last_day:
        windows = schedule.windows_on(day)
        if windows:
            midnight = datetime.combine(day, midnight_time)
            for start_minute, end_minute in windows:
                s = to_us(local_to_utc(midnight + timedelta(minutes=start_minute), zone))
                e = to_us(local_to_utc(midnight + timedelta(minutes=end_minute), zone))
                # s == e: the window lay wholly inside a spring-forward gap.
                if s < e and s < end_us and start_us < e:
                    out.append((s, e))
        day += _ONE_DAY
    return out


def expand_windows(schedule: Schedule, start_utc: datetime, end_utc: datetime) -> list[Interval]:
    """The schedule's windows that overlap ``[start_utc, end_utc)``, **not** clipped, in UTC.

    One interval per merged local window of each local date (windows of consecutive dates are
    not joined), sorted by start. Slot generation anchors its grid on these starts, so the grid
    does not move with the query range. ``start_utc``/``end_utc``: aware datetimes.
    """
    return intervals_of(window_spans(schedule, *_check_range(start_utc, end_utc)))


def expand(schedule: Schedule, start_utc: datetime, end_utc: datetime) -> list[Interval]:
    """Availability of ``schedule`` in ``[start_utc, end_utc)`` as merged UTC intervals.

    Expands per local date (override, else weekly windows), converts each local bound to UTC
    with :func:`local_to_utc` (DST rules in the module docstring), clips to the range and
    merges (22:00–24:00 and 00:00–02:00 of the next day become one interval). Sorted,
    disjoint, non-touching. ``start_utc``/``end_utc``: aware datetimes; an empty range gives
    ``[]``. Rule source: docs/api.md "Availability".
    """
    start_us, end_us = _check_range(start_utc, end_utc)
    spans = window_spans(schedule, start_us, end_us)
    return intervals_of(merge_spans((max(s, start_us), min(e, end_us)) for s, e in spans))


def subtract(free: Iterable[Interval], busy: Iterable[Interval]) -> list[Interval]:
    """``free − busy``: the instants of ``free`` not in any ``busy`` interval.

    Inputs in any order, may overlap; the answer is sorted, disjoint and non-touching.
    O((n + m) log(n + m)) for the sort, then a linear two-pointer sweep.
    """
    return intervals_of(subtract_spans(merge_spans(spans_of(free)), merge_spans(spans_of(busy))))


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """``a ∩ b``: instants in both; inputs in any order; answer sorted, disjoint, non-touching."""
    return intervals_of(intersect_spans(merge_spans(spans_of(a)), merge_spans(spans_of(b))))


def pad(
    intervals: Iterable[Interval], *, before_minutes: int, after_minutes: int
) -> list[Interval]:
    """Each ``[s, e)`` widened to ``[s − before_minutes, e + after_minutes)``, then merged.

    Use it to add an existing call's own buffers to its busy time. Minutes must be ``>= 0``
    (``ValueError`` otherwise).
    """
    return intervals_of(
        pad_spans(spans_of(intervals), before_minutes * MINUTE_US, after_minutes * MINUTE_US)
    )


def busy_for_booking(
    busy: Iterable[Interval], *, buffer_before_minutes: int, buffer_after_minutes: int
) -> list[Interval]:
    """Busy time a new booking's ``[start, end)`` must avoid so that its buffers stay clear too.

    A booking ``[t, t + d)`` with buffers needs ``[t − before, t + d + after)`` free of busy. That
    holds exactly when ``[t, t + d)`` misses every busy ``[s, e)`` widened to
    ``[s − after, e + before)`` — note the swap: the buffer *after* the new call keeps it away
    from the *start* of the next busy interval. Rule source: docs/api.md (free = availability −
    busy − buffers). Buffers only keep the booking away from busy time; they may fall outside
    the availability windows. Minutes ``>= 0``.
    """
    return pad(busy, before_minutes=buffer_after_minutes, after_minutes=buffer_before_minutes)


def free_time(
    schedule: Schedule,
    busy: Iterable[Interval],
    start_utc: datetime,
    end_utc: datetime,
    *,
    buffer_before_minutes: int = 0,
    buffer_after_minutes: int = 0,
) -> list[Interval]:
    """``expand(schedule, start_utc, end_utc) − busy_for_booking(busy, buffers)``: where a new
    booking may lie, as sorted disjoint UTC intervals (docs/api.md: free = availability − busy)."""
    return subtract(
        expand(schedule, start_utc, end_utc),
        busy_for_booking(
            busy,
            buffer_before_minutes=buffer_before_minutes,
            buffer_after_minutes=buffer_after_minutes,
        ),
    )


__all__ = [
    "DateOverride",
    "LocalWindow",
    "Schedule",
    "Weekday",
    "WeeklyWindow",
    "busy_for_booking",
    "expand",
    "expand_windows",
    "format_hhmm",
    "free_time",
    "intersect",
    "local_to_utc",
    "pad",
    "parse_hhmm",
    "subtract",
]

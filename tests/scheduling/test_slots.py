"""Slot generation: a brute-force oracle, the safety properties of SPEC §5, alignment, DST."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closerdesk.scheduling._spans import spans_of, to_us
from closerdesk.scheduling.availability import (
    DateOverride,
    LocalWindow,
    Schedule,
    Weekday,
    WeeklyWindow,
    busy_for_booking,
    expand,
    expand_windows,
)
from closerdesk.scheduling.intervals import Interval, merge
from closerdesk.scheduling.slots import (
    HostBusySpans,
    HostSchedule,
    HostWindows,
    Slot,
    SpanColumns,
    find_slots,
    generate_slots,
)
from tests.scheduling.helpers import (
    ZONES,
    at,
    iv,
    ranges_near_transitions,
    utc,
    weekly_windows,
)

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


class Link:
    """The parameters of one slot query (a booking link plus a range and a clock)."""

    def __init__(
        self,
        hosts: list[HostSchedule],
        start: datetime,
        end: datetime,
        duration: int,
        interval: int | None,
        notice: int,
        before: int,
        after: int,
        now: datetime,
    ) -> None:
        self.hosts, self.start, self.end, self.now = hosts, start, end, now
        self.duration, self.interval, self.notice = duration, interval, notice
        self.before, self.after = before, after

    def slots(self) -> list[Slot]:
        return find_slots(
            self.hosts,
            start_utc=self.start,
            end_utc=self.end,
            duration_minutes=self.duration,
            slot_interval_minutes=self.interval,
            minimum_notice_minutes=self.notice,
            buffer_before_minutes=self.before,
            buffer_after_minutes=self.after,
            now=self.now,
        )

    def __repr__(self) -> str:
        return repr(self.__dict__)


def oracle(link: Link) -> dict[datetime, list[str]]:
    """Every grid point of every window, checked against every busy interval: O(slots × busy)."""
    d = link.duration * MINUTE
    step = (link.interval or link.duration) * MINUTE
    earliest = max(link.start, link.now + link.notice * MINUTE)
    out: dict[datetime, list[str]] = defaultdict(list)
    for host in link.hosts:
        wide = (link.start - 2 * DAY, link.end + 2 * DAY)
        availability = expand(host.schedule, *wide)
        for w in expand_windows(host.schedule, *wide):
            t = w.start
            while t < w.end:
                inside = any(a.start <= t and t + d <= a.end for a in availability)
                buffered = Interval(t - link.before * MINUTE, t + d + link.after * MINUTE)
                clear = not any(buffered.overlaps(b) for b in host.busy)
                if earliest <= t < link.end and inside and clear:
                    out[t].append(host.member_id)
                t += step
    return dict(out)


@st.composite
def links(draw: st.DrawFn) -> Link:
    zones = draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=3))
    start, end = draw(ranges_near_transitions(zones[0]))
    end = min(end, start + 2 * DAY)
    hosts = []
    for n, zone in enumerate(zones):
        busy_count = draw(st.integers(0, 12))
        busy = []
        for _ in range(busy_count):
            s = start + draw(st.integers(-6 * 60, int((end - start) / MINUTE) + 6 * 60)) * MINUTE
            busy.append(Interval(s, s + draw(st.integers(1, 240)) * MINUTE))
        schedule = Schedule(zone, tuple(draw(weekly_windows())))
        hosts.append(HostSchedule(f"host_{n}", schedule, busy))
    duration = draw(st.one_of(st.sampled_from([15, 30, 45, 60, 90]), st.integers(1, 180)))
    interval = draw(st.one_of(st.none(), st.sampled_from([10, 15, 30, 60]), st.integers(5, 120)))
    now = start + draw(st.integers(-2 * 1440, 1440)) * MINUTE
    return Link(
        hosts,
        start,
        end,
        duration,
        interval,
        draw(st.sampled_from([0, 0, 60, 120, 24 * 60])),
        draw(st.sampled_from([0, 0, 5, 10, 30])),
        draw(st.sampled_from([0, 0, 5, 15, 30])),
        now,
    )


@settings(max_examples=250, deadline=None)
@given(links())
def test_slots_match_the_brute_force_oracle(link: Link) -> None:
    slots = link.slots()
    assert {s.start: list(s.member_ids) for s in slots} == oracle(link)


def _as_columns(host: HostSchedule) -> HostBusySpans:
    """The host with its busy time in span form, as the database hands it over: two lists,
    filled in two pieces in reverse order (order must not matter)."""
    columns = SpanColumns()
    spans = spans_of(host.busy)[::-1]
    half = len(spans) // 2
    for piece in (spans[:half], spans[half:]):
        columns.extend([s for s, _ in piece], [e for _, e in piece])
    return HostBusySpans(host.member_id, host.schedule, columns)


@settings(max_examples=250, deadline=None)
@given(links())
def test_busy_in_span_form_gives_the_same_slots(link: Link) -> None:
    expected = link.slots()
    for hosts in (
        [_as_columns(h) for h in link.hosts],
        [h if n % 2 else _as_columns(h) for n, h in enumerate(link.hosts)],
    ):
        assert (
            find_slots(
                hosts,
                start_utc=link.start,
                end_utc=link.end,
                duration_minutes=link.duration,
                slot_interval_minutes=link.interval,
                minimum_notice_minutes=link.notice,
                buffer_before_minutes=link.before,
                buffer_after_minutes=link.after,
                now=link.now,
            )
            == expected
        )


def test_span_columns_pair_up_by_position() -> None:
    columns = SpanColumns()
    assert list(columns.spans()) == []
    columns.extend([1, 5], [2, 9])
    columns.extend([], [])
    columns.extend([3], [4])
    assert (columns.starts, columns.ends) == ([1, 5, 3], [2, 9, 4])
    assert list(columns.spans()) == [(1, 2), (5, 9), (3, 4)]
    with pytest.raises(ValueError, match=r"^starts and ends differ in length$"):
        columns.extend([1, 2], [3])
    assert list(columns.spans()) == [(1, 2), (5, 9), (3, 4)]
    columns.starts.append(7)  # the lists are plain lists: a lone start is refused when paired
    with pytest.raises(ValueError, match="zip"):
        list(columns.spans())


def test_a_busy_span_blocks_its_slot() -> None:
    host = utc_host("a", [], ("monday", "09:00", "11:00"))
    busy = SpanColumns()
    busy.extend([to_us(utc(2026, 1, 5, 9, 30))], [to_us(utc(2026, 1, 5, 10))])
    slots = find_slots(
        [HostBusySpans("a", host.schedule, busy)],
        start_utc=utc(2026, 1, 5),
        end_utc=utc(2026, 1, 6),
        duration_minutes=30,
        buffer_after_minutes=15,
        now=utc(2026, 1, 5),
    )
    # 09:00 would need 09:30 + 15 minutes clear; 10:00 is free, 10:30 too.
    assert starts(slots) == ["10:00", "10:30"]


@settings(max_examples=250, deadline=None)
@given(links())
def test_every_slot_is_safe(link: Link) -> None:
    """No slot overlaps busy time incl. buffers; every slot lies in availability; notice, range
    and grid hold; sorted and unique."""
    slots = link.slots()
    d = link.duration * MINUTE
    step = (link.interval or link.duration) * MINUTE
    by_id = {h.member_id: h for h in link.hosts}
    starts = [s.start for s in slots]
    assert starts == sorted(set(starts))
    for slot in slots:
        assert slot.member_ids
        assert len(set(slot.member_ids)) == len(slot.member_ids)
        assert slot.end - slot.start == d
        assert link.start <= slot.start < link.end
        assert slot.start >= link.now + link.notice * MINUTE
        assert slot.start.utcoffset() == timedelta(0)
        for member_id in slot.member_ids:
            host = by_id[member_id]
            buffered = Interval(slot.start - link.before * MINUTE, slot.end + link.after * MINUTE)
            assert not any(buffered.overlaps(b) for b in host.busy)
            # Inside availability: expanding the schedule over the slot gives the whole slot.
            assert expand(host.schedule, slot.start, slot.end) == [Interval(slot.start, slot.end)]
            windows = expand_windows(host.schedule, slot.start, slot.end)
            assert any(
                w.start <= slot.start < w.end and (slot.start - w.start) % step == timedelta(0)
                for w in windows
            )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 600)), max_size=8),
    st.lists(st.tuples(st.integers(-100, 3600), st.integers(1, 200)), max_size=15),
    st.integers(1, 120),
    st.one_of(st.none(), st.integers(1, 90)),
    st.integers(-200, 3000),
    st.integers(0, 600),
)
def test_generate_slots_on_arbitrary_windows(
    raw_windows: list[tuple[int, int]],
    raw_blocked: list[tuple[int, int]],
    duration: int,
    interval: int | None,
    now_minute: int,
    notice: int,
) -> None:
    # Make the windows disjoint (touching allowed) by laying them end to end with gaps.
    windows: list[Interval] = []
    cursor = 0
    for gap, length in raw_windows:
        windows.append(iv(cursor + gap % 200, cursor + gap % 200 + length))
        cursor = cursor + gap % 200 + length
    blocked = [iv(s, s + n) for s, n in raw_blocked]
    slots = generate_slots(
        [HostWindows("h", windows, blocked)],
        start_utc=at(0),
        end_utc=at(3000),
        duration_minutes=duration,
        slot_interval_minutes=interval,
        minimum_notice_minutes=notice,
        now=at(now_minute),
    )
    step = interval or duration
    expected = []
    for w in windows:
        t = w.start
        while t < w.end:
            slot = Interval(t, t + duration * MINUTE)
            if (
                at(max(0, now_minute + notice)) <= t < at(3000)
                and any(a.start <= slot.start and slot.end <= a.end for a in merge(windows))
                and not any(slot.overlaps(b) for b in blocked)
            ):
                expected.append(t)
            t += step * MINUTE
    assert [s.start for s in slots] == expected


# ------------------------------------------------------------------------------ explicit cases


def utc_host(member_id: str, busy: list[Interval], *windows: tuple[str, str, str]) -> HostSchedule:
    return HostSchedule(
        member_id, Schedule("UTC", tuple(WeeklyWindow.parse(*w) for w in windows)), busy
    )


MONDAY = date(2026, 1, 5)


def starts(slots: list[Slot]) -> list[str]:
    return [s.start.strftime("%H:%M") for s in slots]


def monday_slots(hosts: list[HostSchedule], **kwargs: int) -> list[Slot]:
    params: dict[str, int] = {"duration_minutes": 30} | kwargs
    now = params.pop("now_hour", 0)
    start = params.pop("start_minute", 0)
    return find_slots(
        hosts,
        start_utc=utc(2026, 1, 5) + start * MINUTE,
        end_utc=utc(2026, 1, 6),
        now=utc(2026, 1, 5, now),
        **params,
    )


def test_grid_is_anchored_on_the_window_start_not_on_busy_ends() -> None:
    busy = [Interval(utc(2026, 1, 5, 10), utc(2026, 1, 5, 10, 10))]
    host = utc_host("a", busy, ("monday", "09:00", "12:00"))
    assert starts(monday_slots([host])) == ["09:00", "09:30", "10:30", "11:00", "11:30"]
    # The query start and the clock cut the grid; they never move it.
    assert starts(monday_slots([host], start_minute=9 * 60 + 10)) == [
        "09:30",
        "10:30",
        "11:00",
        "11:30",
    ]


def test_minimum_notice_counts_from_now() -> None:
    host = utc_host("a", [], ("monday", "09:00", "12:00"))
    assert starts(monday_slots([host], now_hour=8, minimum_notice_minutes=120)) == [
        "10:00",
        "10:30",
        "11:00",
        "11:30",
    ]


def test_slot_interval_differs_from_duration() -> None:
    host = utc_host("a", [], ("monday", "09:00", "11:00"))
    slots = monday_slots([host], duration_minutes=60, slot_interval_minutes=15)
    assert starts(slots) == ["09:00", "09:15", "09:30", "09:45", "10:00"]
    assert all(s.end - s.start == timedelta(minutes=60) for s in slots)


def test_buffers_keep_the_booking_clear_of_busy_time() -> None:
    # SPEC §5 example: 45 minutes every 30, 15 minutes after. A call 10:00–10:45 blocks 09:30
    # (its buffer would run to 10:30) but not 09:00 (buffer to 10:00); 11:00 is free again.
    busy = [Interval(utc(2026, 1, 5, 10), utc(2026, 1, 5, 10, 45))]
    host = utc_host("a", busy, ("monday", "09:00", "12:30"))
    slots = monday_slots(
        [host], duration_minutes=45, slot_interval_minutes=30, buffer_after_minutes=15
    )
    assert starts(slots) == ["09:00", "11:00", "11:30"]
    # A 20-minute before-buffer needs 10:45 + 20 = 11:05 before the start: 11:00 goes.
    slots = monday_slots(
        [host], duration_minutes=45, slot_interval_minutes=30, buffer_before_minutes=20
    )
    assert starts(slots) == ["09:00", "11:30"]


def test_slot_may_run_past_midnight_into_the_next_window() -> None:
    host = utc_host("a", [], ("monday", "22:00", "24:00"), ("tuesday", "00:00", "01:00"))
    slots = find_slots(
        [host],
        start_utc=utc(2026, 1, 5),
        end_utc=utc(2026, 1, 7),
        duration_minutes=60,
        slot_interval_minutes=30,
        now=utc(2026, 1, 1),
    )
    assert [s.start for s in slots] == [
        utc(2026, 1, 5, 22),
        utc(2026, 1, 5, 22, 30),
        utc(2026, 1, 5, 23),
        utc(2026, 1, 5, 23, 30),  # 23:30–00:30 crosses midnight
        utc(2026, 1, 6, 0),
    ]


def test_union_of_hosts_with_their_own_grids_and_members() -> None:
    ny = HostSchedule(
        "ny", Schedule("America/New_York", (WeeklyWindow.parse("monday", "09:00", "11:00"),)), []
    )
    # Kolkata is UTC+05:30: 19:00–21:00 local is 13:30Z–15:30Z, on a half-hour grid.
    kolkata = HostSchedule(
        "in", Schedule("Asia/Kolkata", (WeeklyWindow.parse("monday", "19:00", "21:00"),)), []
    )
    slots = find_slots(
        [ny, kolkata],
        start_utc=utc(2026, 1, 5),
        end_utc=utc(2026, 1, 6),
        duration_minutes=60,
        now=utc(2026, 1, 1),
    )
    assert [(s.start.strftime("%H:%M"), s.member_ids) for s in slots] == [
        ("13:30", ("in",)),
        ("14:00", ("ny",)),
        ("14:30", ("in",)),
        ("15:00", ("ny",)),
    ]
    # Same grid in one zone: one slot, both hosts, in host order.
    twin = HostSchedule("ny2", ny.schedule, [])
    both = find_slots(
        [twin, ny],
        start_utc=utc(2026, 1, 5),
        end_utc=utc(2026, 1, 6),
        duration_minutes=60,
        now=utc(2026, 1, 1),
    )
    assert [s.member_ids for s in both] == [("ny2", "ny"), ("ny2", "ny")]


@pytest.mark.parametrize(
    ("zone", "day", "first_utc_hour"),
    [
        ("America/New_York", date(2026, 3, 8), 13),
        ("America/New_York", date(2026, 11, 1), 14),
        ("Europe/Berlin", date(2026, 3, 29), 7),
        ("Europe/Berlin", date(2026, 10, 25), 8),
    ],
)
def test_nine_to_five_slots_on_dst_days(zone: str, day: date, first_utc_hour: int) -> None:
    host = HostSchedule(
        "a", Schedule(zone, tuple(WeeklyWindow(d, 9 * 60, 17 * 60) for d in Weekday)), []
    )
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    slots = find_slots(
        [host],
        start_utc=midnight,
        end_utc=midnight + DAY,
        duration_minutes=60,
        now=midnight - 30 * DAY,
    )
    assert [s.start for s in slots] == [
        midnight + timedelta(hours=first_utc_hour + k) for k in range(8)
    ]
    # Every slot starts on the hour of the local wall clock: 09:00 … 16:00.
    assert [s.start.astimezone(host.schedule.zone).hour for s in slots] == list(range(9, 17))


def test_slots_in_a_spring_forward_gap_start_at_the_jump() -> None:
    # 02:30–04:00 on 2026-03-08 in New York is 07:00Z–08:00Z: one 30-minute grid from 07:00Z.
    day = date(2026, 3, 8)
    schedule = Schedule(
        "America/New_York",
        (),
        (DateOverride(day, (LocalWindow.parse("02:30", "04:00"),)),),
    )
    slots = find_slots(
        [HostSchedule("a", schedule, [])],
        start_utc=utc(2026, 3, 8),
        end_utc=utc(2026, 3, 9),
        duration_minutes=30,
        now=utc(2026, 1, 1),
    )
    assert [s.start for s in slots] == [utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 30)]


def test_no_hosts_or_an_empty_range_give_no_slots() -> None:
    host = utc_host("a", [], ("monday", "09:00", "12:00"))
    assert monday_slots([]) == []
    assert monday_slots([host], now_hour=23, minimum_notice_minutes=120) == []


def test_bad_parameters_are_rejected() -> None:
    host = utc_host("a", [], ("monday", "09:00", "12:00"))
    with pytest.raises(ValueError, match="duration"):
        monday_slots([host], duration_minutes=0)
    with pytest.raises(ValueError, match="slot_interval"):
        monday_slots([host], slot_interval_minutes=0)
    with pytest.raises(ValueError, match="notice"):
        monday_slots([host], minimum_notice_minutes=-1)
    with pytest.raises(ValueError, match="buffers"):
        monday_slots([host], buffer_after_minutes=-5)
    with pytest.raises(ValueError, match="naive"):
        find_slots(
            [host],
            start_utc=utc(2026, 1, 5),
            end_utc=utc(2026, 1, 6),
            duration_minutes=30,
            now=datetime(2026, 1, 1),
        )
    with pytest.raises(ValueError, match="overlap"):
        generate_slots(
            [HostWindows("a", [iv(0, 60), iv(30, 90)], [])],
            start_utc=at(0),
            end_utc=at(100),
            duration_minutes=30,
            now=at(0),
        )


def test_generate_slots_takes_blocked_time_from_busy_for_booking() -> None:
    windows = [iv(0, 180)]
    blocked = busy_for_booking([iv(60, 90)], buffer_before_minutes=0, buffer_after_minutes=15)
    slots = generate_slots(
        [HostWindows("a", windows, blocked)],
        start_utc=at(0),
        end_utc=at(180),
        duration_minutes=30,
        now=at(0),
    )
    assert [s.start for s in slots] == [at(0), at(90), at(120), at(150)]

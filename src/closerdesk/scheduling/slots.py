"""Slot generation for a booking link: bookable start times and who is free at each. Pure, no I/O.

Rule source: docs/api.md "Slots" — start times every ``slot_interval`` (default = duration) where at
least one host is free (round robin), honouring minimum notice; answered in UTC.

**Alignment rule.** Each host's slot grid is anchored at the start of each of its availability
windows (one per merged local window per local date, :func:`expand_windows`): a window opening
at 09:00 local with a 30-minute interval offers 09:00, 09:30, 10:00, … A busy interval does not
shift the grid (after a call ending 10:10 the next start is 10:30, not 10:10), and the query
range, ``now`` and the minimum notice only cut the grid, never move it. The link's slots are the
union of its hosts' grids, so hosts whose windows open at different minutes (09:00 in New York,
09:30 in Kolkata) each contribute their own starts.

A start ``t`` is offered for a host when, with ``d`` the duration:

* ``t`` is on the grid of a window ``w`` of the host with ``w.start <= t < w.end``;
* ``[t, t + d)`` lies inside the host's availability (windows merged, so a slot may run on past
  midnight into the next date's window when the two touch);
* ``[t, t + d)`` misses the host's blocked time (busy widened by the link's buffers, see
  :func:`~closerdesk.scheduling.availability.busy_for_booking`);
* ``start_utc <= t < end_utc`` and ``t >= now + minimum_notice``.

Cost: per host one sort of its busy intervals, then linear sweeps (merge, subtract, grid walk),
so O(B log B + W + S) for B busy intervals, W windows and S offered starts — no
slots × busy scan. ``bench/slots.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from closerdesk.scheduling._spans import (
    MINUTE_US,
    Span,
    SpanColumns,
    from_us,
    merge_spans,
    pad_spans,
    spans_of,
    subtract_spans,
    to_us,
)
from closerdesk.scheduling.availability import Schedule, window_spans
from closerdesk.scheduling.intervals import Interval


@dataclass(frozen=True)
class Slot:
    """A bookable ``[start, end)`` (aware UTC) and the hosts free for all of it, in input order."""

    start: datetime
    end: datetime
    member_ids: tuple[str, ...]


@dataclass(frozen=True)
class HostWindows:
    """One host's expanded availability and the time a booking must avoid.

    ``windows``: availability windows as :func:`expand_windows` gives them (UTC, disjoint, one
    per local window per date; touching is fine); their starts anchor the slot grid.
    ``blocked``: busy time already widened for the link's buffers (:func:`busy_for_booking`),
    any order, may overlap.
    """

    member_id: str
    windows: Sequence[Interval]
    blocked: Sequence[Interval]


@dataclass(frozen=True)
class HostSchedule:
    """One host of a booking link: its schedule and its raw busy time (UTC, any order).

    ``busy`` should hold the host's calls (with their own buffers added, see
    :func:`~closerdesk.scheduling.availability.pad`) and calendar busy overlapping
    ``[start_utc − buffer_after − duration, end_utc + duration + buffer_before)``; intervals
    outside that are harmless.
    """

    member_id: str
    schedule: Schedule
    busy: Sequence[Interval]


@dataclass(frozen=True)
class HostBusySpans:
    """:class:`HostSchedule` with its busy time already in span form: integer microseconds
    since the Unix epoch (UTC) as two parallel lists (:class:`SpanColumns`, ``start < end``,
    any order, may overlap), as the database computes them
    (``closerdesk.calendars.busy.stored_busy_spans``). Skips the conversion of each
    ``Interval``; same rules otherwise."""

    member_id: str
    schedule: Schedule
    busy: SpanColumns


def _check_params(
    duration_minutes: int, slot_interval_minutes: int | None, minimum_notice_minutes: int
) -> tuple[int, int, int]:
    if duration_minutes < 1:
        raise ValueError("duration_minutes must be >= 1")
    step = duration_minutes if slot_interval_minutes is None else slot_interval_minutes
    if step < 1:
        raise ValueError("slot_interval_minutes must be >= 1")
    if minimum_notice_minutes < 0:
        raise ValueError("minimum_notice_minutes must be >= 0")
    return duration_minutes * MINUTE_US, step * MINUTE_US, minimum_notice_minutes * MINUTE_US


def _host_starts(
    windows: Sequence[Span], free: Sequence[Span], lo: int, hi: int, dur: int, step: int
) -> Iterator[int]:
    """Grid starts ``t`` of ``windows`` (sorted, disjoint) with ``lo <= t < hi`` and
    ``[t, t + dur)`` inside one span of ``free`` (merged). Increasing. O(W + F + S)."""
    j = 0
    nf = len(free)
    for ws, we in windows:
        if we <= lo:
            continue
        if ws >= hi:
            break
        # Free spans ending at or before this window's start serve no later window either.
        while j < nf and free[j][1] <= ws:
            j += 1
        k = j
        while k < nf and free[k][0] < we:
            fs, fe = free[k]
            first = max(fs, ws, lo)
            last = min(fe - dur, we - 1, hi - 1)
            if first <= last:
                t = ws + -(-(first - ws) // step) * step  # the first grid point >= first
                while t <= last:
                    yield t
                    t += step
            k += 1


def _slots_from_spans(
    hosts: Sequence[tuple[str, list[Span], list[Span]]], lo: int, hi: int, dur: int, step: int
) -> list[Slot]:
    by_start: dict[int, list[str]] = {}
    for member_id, windows, blocked in hosts:
        free = subtract_spans(merge_spans(windows), blocked)
        for t in _host_starts(windows, free, lo, hi, dur, step):
            members = by_start.get(t)
            if members is None:
                by_start[t] = [member_id]
            else:
                members.append(member_id)
    duration = timedelta(microseconds=dur)
    out: list[Slot] = []
    for t in sorted(by_start):
        start = from_us(t)
        out.append(Slot(start, start + duration, tuple(by_start[t])))
    return out


def generate_slots(
    hosts: Sequence[HostWindows],
    *,
    start_utc: datetime,
    end_utc: datetime,
    duration_minutes: int,
    slot_interval_minutes: int | None = None,
    minimum_notice_minutes: int = 0,
    now: datetime,
) -> list[Slot]:
    """Slots starting in ``[start_utc, end_utc)`` from already expanded availability.

    ``hosts``: per host its windows and blocked time (:class:`HostWindows`). ``duration_minutes``
    ``>= 1``; ``slot_interval_minutes`` ``>= 1``, default = duration; ``minimum_notice_minutes``
    ``>= 0``, counted from ``now`` (aware). Answer: :class:`Slot` per offered start, sorted by
    start, each with the free hosts in ``hosts`` order; a start no host can take is absent.
    Alignment and conditions: module docstring. ``ValueError`` for bad parameters or naive
    datetimes. Rule source: docs/api.md "Slots".
    """
    dur, step, notice = _check_params(
        duration_minutes, slot_interval_minutes, minimum_notice_minutes
    )
    lo = max(to_us(start_utc), to_us(now) + notice)
    hi = to_us(end_utc)
    if hi <= lo:
        return []
    prepared: list[tuple[str, list[Span], list[Span]]] = []
    for h in hosts:
        windows = sorted(spans_of(h.windows))
        if any(a[1] > b[0] for a, b in pairwise(windows)):
            raise ValueError(f"windows of {h.member_id} overlap; pass expand_windows() output")
        prepared.append((h.member_id, windows, merge_spans(spans_of(h.blocked))))
    return _slots_from_spans(prepared, lo, hi, dur, step)


def find_slots(
    hosts: Sequence[HostSchedule | HostBusySpans],
    *,
    start_utc: datetime,
    end_utc: datetime,
    duration_minutes: int,
    slot_interval_minutes: int | None = None,
    minimum_notice_minutes: int = 0,
    buffer_before_minutes: int = 0,
    buffer_after_minutes: int = 0,
    now: datetime,
) -> list[Slot]:
    """A booking link's slots starting in ``[start_utc, end_utc)``, end to end.

    Expands each host's :class:`Schedule` (per local date, DST-correct, see
    :mod:`closerdesk.scheduling.availability`), blocks its busy time widened by the link's
    buffers (minutes, ``>= 0``; the booking's ``[t − before, t + d + after)`` must miss busy),
    then generates slots as :func:`generate_slots` does. Busy time comes as ``Interval``s
    (:class:`HostSchedule`) or as spans (:class:`HostBusySpans`), host by host. Durations and
    intervals in minutes; datetimes aware; answer sorted by start with the free hosts of each
    slot in ``hosts`` order. Rule source: docs/api.md "Availability" and "Slots".
    """
    dur, step, notice = _check_params(
        duration_minutes, slot_interval_minutes, minimum_notice_minutes
    )
    if buffer_before_minutes < 0 or buffer_after_minutes < 0:
        raise ValueError("buffers must be >= 0")
    lo = max(to_us(start_utc), to_us(now) + notice)
    hi = to_us(end_utc)
    if hi <= lo:
        return []
    prepared = [
        (
            h.member_id,
            # Windows up to hi + dur: a slot starting just before hi may run into them.
            window_spans(h.schedule, lo, hi + dur),
            pad_spans(
                spans_of(h.busy) if isinstance(h, HostSchedule) else h.busy.spans(),
                buffer_after_minutes * MINUTE_US,  # see busy_for_booking: the swap is intended
                buffer_before_minutes * MINUTE_US,
            ),
        )
        for h in hosts
    ]
    return _slots_from_spans(prepared, lo, hi, dur, step)


__all__ = [
    "HostBusySpans",
    "HostSchedule",
    "HostWindows",
    "Slot",
    "SpanColumns",
    "find_slots",
    "generate_slots",
]

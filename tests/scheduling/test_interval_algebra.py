"""merge / subtract / intersect / pad: algebraic properties against a set-of-minutes model."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closerdesk.scheduling.availability import busy_for_booking, intersect, pad, subtract
from closerdesk.scheduling.intervals import Interval, merge
from tests.scheduling.helpers import assert_canonical, cells, interval_lists, iv, minute_of

FAST = settings(max_examples=300, deadline=None)


@FAST
@given(interval_lists)
def test_merge_covers_the_same_time_canonically(xs: list[Interval]) -> None:
    merged = merge(xs)
    assert cells(merged) == cells(xs)
    assert_canonical(merged)
    assert merge(merged) == merged


@FAST
@given(interval_lists, st.randoms(use_true_random=False))
def test_merge_ignores_order(xs: list[Interval], rnd: random.Random) -> None:
    shuffled = list(xs)
    rnd.shuffle(shuffled)
    assert merge(shuffled) == merge(xs)


@FAST
@given(interval_lists, interval_lists)
def test_subtract_is_set_difference(free: list[Interval], busy: list[Interval]) -> None:
    result = subtract(free, busy)
    assert cells(result) == cells(free) - cells(busy)
    assert_canonical(result)
    assert not any(r.overlaps(b) for r in result for b in busy)


@FAST
@given(interval_lists, interval_lists)
def test_intersect_is_set_intersection(a: list[Interval], b: list[Interval]) -> None:
    result = intersect(a, b)
    assert cells(result) == cells(a) & cells(b)
    assert_canonical(result)
    assert intersect(b, a) == result


@FAST
@given(interval_lists, interval_lists)
def test_difference_and_intersection_partition_free(a: list[Interval], b: list[Interval]) -> None:
    assert merge(subtract(a, b) + intersect(a, b)) == merge(a)
    assert cells(subtract(a, b)).isdisjoint(cells(intersect(a, b)))


@FAST
@given(interval_lists, interval_lists, interval_lists)
def test_subtracting_twice_is_subtracting_the_union(
    a: list[Interval], b: list[Interval], c: list[Interval]
) -> None:
    assert subtract(subtract(a, b), c) == subtract(a, b + c) == subtract(subtract(a, c), b)


@FAST
@given(interval_lists)
def test_subtract_identities(a: list[Interval]) -> None:
    assert subtract(a, []) == merge(a)
    assert subtract(a, a) == []
    assert subtract([], a) == []


@FAST
@given(interval_lists, st.integers(0, 30), st.integers(0, 30))
def test_pad_widens_each_interval(xs: list[Interval], before: int, after: int) -> None:
    padded = pad(xs, before_minutes=before, after_minutes=after)
    expected = merge(iv(minute_of(x.start) - before, minute_of(x.end) + after) for x in xs)
    assert padded == expected
    assert cells(xs) <= cells(padded)
    assert pad(xs, before_minutes=0, after_minutes=0) == merge(xs)


@FAST
@given(
    interval_lists,
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(-40, 500),
    st.integers(1, 90),
)
def test_busy_for_booking_keeps_the_buffers_clear(
    busy: list[Interval], before: int, after: int, t: int, d: int
) -> None:
    """The slot misses the widened busy time exactly when the buffered slot misses busy."""
    blocked = busy_for_booking(busy, buffer_before_minutes=before, buffer_after_minutes=after)
    slot = iv(t, t + d)
    buffered = iv(t - before, t + d + after)
    assert any(slot.overlaps(b) for b in blocked) == any(buffered.overlaps(b) for b in busy)


def test_pad_rejects_negative_minutes() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        pad([iv(0, 10)], before_minutes=-1, after_minutes=0)


def test_subtract_examples() -> None:
    free = [iv(0, 100), iv(200, 300)]
    busy = [iv(50, 60), iv(90, 210), iv(250, 250 + 50)]
    assert subtract(free, busy) == [iv(0, 50), iv(60, 90), iv(210, 250)]
    assert subtract([iv(0, 10)], [iv(10, 20)]) == [iv(0, 10)]  # touching is not overlapping

"""Round-robin controls in the pure core (docs/sales-floor.md "Round-robin controls"): caps in
the host's zone, the fairness period, the ranking, and what the quota method guarantees over
many bookings with cancellations (credit-back)."""

from __future__ import annotations

import random
import time
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closerdesk.scheduling.round_robin import (
    Candidate,
    CapLoad,
    Caps,
    Priority,
    choose_host,
    period_start,
    rank_hosts,
    within_caps,
)

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday


# --- the fairness period ---
def test_period_start() -> None:
    now = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)  # a Wednesday
    assert period_start("month", now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert period_start("week", now) == datetime(2026, 3, 16, tzinfo=UTC)
    assert period_start("rolling_30_days", now) == now - timedelta(days=30)
    monday = datetime(2026, 3, 16, 0, 0, tzinfo=UTC)
    assert period_start("week", monday) == monday
    assert period_start("week", monday - timedelta(microseconds=1)) == datetime(
        2026, 3, 9, tzinfo=UTC
    )
    # Another zone's ``now`` is read in UTC.
    berlin = datetime(2026, 4, 1, 0, 30, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    )
    assert period_start("month", berlin) == datetime(2026, 4, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"^now must be aware$"):
        period_start("month", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="unknown"):
        period_start("year", now)  # type: ignore[arg-type]


def test_period_start_does_not_depend_on_the_machines_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Periods are UTC whatever zone the server runs in: 20:00 UTC on 31 December is already
    New Year's morning in Tokyo, and still December's period."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        now = datetime(2026, 12, 31, 20, tzinfo=UTC)
        assert period_start("month", now) == datetime(2026, 12, 1, tzinfo=UTC)
        assert period_start("week", now) == datetime(2026, 12, 28, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


@given(st.datetimes(timezones=st.just(UTC)))
def test_period_start_is_at_or_before_now(now: datetime) -> None:
    for period in ("month", "week", "rolling_30_days"):
        start = period_start(period, now)
        assert start <= now
        assert now - start <= timedelta(days=31)
    assert period_start("week", now).weekday() == 0
    assert period_start("month", now).day == 1


# --- caps ---
def test_caps_count_local_days_and_monday_weeks() -> None:
    tokyo = Caps("Asia/Tokyo", per_day=2, per_week=3)
    # 2026-03-01T20:00Z is Monday 05:00 in Tokyo; Sunday 23:00Z is Monday 08:00 there.
    assert tokyo.day_and_week(datetime(2026, 3, 1, 20, tzinfo=UTC)) == (
        date(2026, 3, 2),
        date(2026, 3, 2),
    )
    load = CapLoad.of(tokyo, [datetime(2026, 3, 1, 20, tzinfo=UTC), T0])
    # Both are on Monday 2 March in Tokyo: the day is full, the week has one left.
    assert load.remaining(T0) == 0
    assert not within_caps(load, T0)
    tuesday = T0 + timedelta(days=1)
    assert load.remaining(tuesday) == 1
    assert within_caps(load, tuesday)
    # The next Monday (local) opens a new week.
    assert load.remaining(T0 + timedelta(days=7)) == 2
    # The Sunday before (local) is another week.
    assert load.remaining(datetime(2026, 3, 1, 14, tzinfo=UTC)) == 2
    assert CapLoad.of(Caps("UTC"), [T0] * 50).remaining(T0) is None
    assert within_caps(CapLoad.of(Caps("UTC"), [T0] * 50), T0)
    assert CapLoad.of(Caps("UTC", per_week=1), []).remaining(T0) == 1
    with pytest.raises(ValueError, match=r"^per_day must be >= 1 or None$"):
        Caps("UTC", per_day=0)
    with pytest.raises(ValueError, match=r"^per_week must be >= 1 or None$"):
        Caps("UTC", per_week=0)
    with pytest.raises(ValueError, match=r"^at must be aware$"):
        tokyo.day_and_week(datetime(2026, 1, 1))


def test_a_host_at_its_cap_is_no_candidate_whatever_its_priority() -> None:
    full = Candidate("a", Priority.HIGH, 100, 0, remaining=0)
    low = Candidate("b", Priority.LOW, 100, 9, remaining=1)
    assert choose_host([full, low]) == low
    assert choose_host([full]) is None
    assert rank_hosts([full, low]) == [low]
    with pytest.raises(ValueError, match=r"^remaining of a must be >= 0$"):
        Candidate("a", Priority.HIGH, 1, 0, remaining=-1)


def test_rank_hosts_is_choose_host_repeated() -> None:
    pool = [
        Candidate("a", Priority.MEDIUM, 100, 3),
        Candidate("b", Priority.HIGH, 100, 9),
        Candidate("c", Priority.MEDIUM, 100, 1),
        Candidate("d", Priority.MEDIUM, 0, 0),
    ]
    assert [c.member_id for c in rank_hosts(pool)] == ["b", "c", "a", "d"]
    assert rank_hosts([]) == []


# --- fairness over time ---
def _deviation(bookings: list[int], weights: list[int]) -> list[Fraction]:
    """``bookings_h − share_h × T`` of each host."""
    total, total_w = sum(bookings), sum(weights)
    return [b - Fraction(w * total, total_w) for b, w in zip(bookings, weights, strict=True)]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 50), min_size=1, max_size=8),
    st.integers(1, 150),
    st.randoms(use_true_random=False),
)
def test_without_cancellations_every_host_stays_near_its_share(
    weights: list[int], rounds: int, rnd: random.Random
) -> None:
    """Equal priority, positive weights, always free: after every choice every host is within
    one booking of its share, above and below (the quota method's quota property)."""
    n = len(weights)
    bookings = [0] * n
    last: list[datetime | None] = [None] * n
    for step in range(rounds):
        pool = [
            Candidate(f"h{i}", Priority.HIGH, w, bookings[i], last[i])
            for i, w in enumerate(weights)
        ]
        rnd.shuffle(pool)
        chosen = choose_host(pool)
        assert chosen is not None
        i = int(chosen.member_id[1:])
        bookings[i] += 1
        last[i] = T0 + timedelta(minutes=step)
        for dev in _deviation(bookings, weights):
            assert abs(dev) < 1


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 50), min_size=2, max_size=6),
    st.lists(st.tuples(st.booleans(), st.integers(0, 10_000)), min_size=1, max_size=200),
    st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=6, max_size=6),
)
def test_with_cancellations_and_caps(
    weights: list[int],
    steps: list[tuple[bool, int]],
    day_caps: list[int | None],
) -> None:
    """Random bookings (one a day-slot each, eight a day) and random cancellations, credited
    back (a cancelled call leaves its host's count):

    * a host is only chosen when it stays under a whole booking above its share with that call
      (it was under ``share_h`` above it);
    * once the cancellations stop, every host is back under one booking above its share after
      ``max_h (⌊(excess_h − 1) / share_h⌋ + 1)`` choices (a host that far above is never
      chosen, and each choice takes ``share_h`` off its excess);
    * no host ever holds more calls on one day than its cap.
    """
    n = len(weights)
    total_w = sum(weights)
    share = [Fraction(w, total_w) for w in weights]
    caps = [Caps("UTC", per_day=day_caps[i]) for i in range(n)]
    live: list[list[datetime]] = [[] for _ in range(n)]  # each host's live calls' starts
    slot = 0

    def book() -> int | None:
        nonlocal slot
        at = T0 + timedelta(hours=slot // 8 * 24 + slot % 8)
        slot += 1
        pool = [
            Candidate(
                f"h{i}",
                Priority.HIGH,
                w,
                len(live[i]),
                remaining=CapLoad.of(caps[i], live[i]).remaining(at),
            )
            for i, w in enumerate(weights)
        ]
        before = _deviation([len(x) for x in live], weights)
        chosen = choose_host(pool)
        if chosen is None:
            assert all(not within_caps(CapLoad.of(caps[i], live[i]), at) for i in range(n))
            return None
        i = int(chosen.member_id[1:])
        everyone_free = all(c.remaining != 0 for c in pool)
        live[i].append(at)
        after = _deviation([len(x) for x in live], weights)
        if everyone_free:
            assert before[i] < share[i]
            assert after[i] < 1
        for j in range(n):
            day_caps_j = caps[j].per_day
            if day_caps_j is not None:
                assert max(CapLoad.of(caps[j], live[j]).per_day.values(), default=0) <= day_caps_j
        return i

    for cancel, pick in steps:
        if cancel and any(live):
            holders = [i for i in range(n) if live[i]]
            h = holders[pick % len(holders)]
            live[h].pop(pick % len(live[h]))  # credit-back: the call no longer counts
        else:
            book()

    # Recovery, with no caps in the way (a fresh day for each call).
    caps = [Caps("UTC") for _ in range(n)]
    excess = _deviation([len(x) for x in live], weights)
    needed = max((excess[j] - 1) // share[j] + 1 if excess[j] >= 1 else 0 for j in range(n))
    for _ in range(int(needed)):
        book()
    for dev in _deviation([len(x) for x in live], weights):
        assert dev < 1

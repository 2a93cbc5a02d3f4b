"""Round robin (SPEC §5): priority, weighted share, tie-breaks, and fairness over time."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closerdesk.scheduling.round_robin import Candidate, Priority, choose_host

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def c(
    member_id: str,
    priority: str = "high",
    weight: int = 100,
    bookings: int = 0,
    last: int | None = None,
) -> Candidate:
    """A candidate; ``last`` is hours after T0 of the latest booking (None: never booked)."""
    last_at = None if last is None else T0 + timedelta(hours=last)
    return Candidate(member_id, Priority(priority), weight, bookings, last_at)


def chosen(*candidates: Candidate) -> str | None:
    host = choose_host(candidates)
    return None if host is None else host.member_id


def test_no_candidates_means_no_host() -> None:
    assert choose_host([]) is None


def test_priority_dominates_everything_else() -> None:
    # The high host is far above its share and booked a minute ago; it still wins.
    assert chosen(c("hi", "high", 1, bookings=50, last=99), c("med", "medium", 100)) == "hi"
    assert chosen(c("low", "low", 100), c("med", "medium", 1, bookings=9, last=5)) == "med"
    # A weight-0 high host beats any medium host: weights only matter within one priority.
    assert chosen(c("hi0", "high", 0, bookings=3), c("med", "medium", 100)) == "hi0"


def test_the_quota_method_picks_the_host() -> None:
    # Weights 2:1, bookings 3 and 1 (T = 4): shares of T + 1 = 5 are 10/3 and 5/3, both
    # eligible (3 < 10/3, 1 < 5/3); weight / (bookings + 1): 2/4 = 1/2 and 1/2, a tie, and
    # neither was ever booked: the smaller id.
    assert chosen(c("a", weight=2, bookings=3), c("b", weight=1, bookings=1)) == "a"
    # The same, b never booked and a booked: b.
    assert chosen(c("a", weight=2, bookings=3, last=1), c("b", weight=1, bookings=1)) == "b"
    # Weights 3:1, bookings 2 and 1 (T = 3): shares of 4 are 3 and 1. b would go a whole
    # booking above its share (1 is not < 1): not eligible, whatever its weight / (b + 1).
    assert chosen(c("a", weight=3, bookings=2, last=9), c("b", weight=1, bookings=1)) == "a"
    # Weights 5:1, bookings 0 and 0: 5/1 against 1/1: a.
    assert chosen(c("a", weight=5, last=9), c("b", weight=1)) == "a"
    # Weights 5:1, bookings 5 and 0 (T = 5, shares of 6: 5 and 1): a holds its share of 6
    # already (5 is not < 5), so b, however recently booked.
    assert chosen(c("a", weight=5, bookings=5), c("b", weight=1, last=9)) == "b"
    # Both eligible and the ratio decides. Weights 100 : 900, bookings 0 and 5 (shares of 6:
    # 0.6 and 5.4): 100/1 against 900/6 = 150: b, although a is below its share of 5 (0.5) and
    # b above (4.5): the quota method, not "furthest below", keeps both within one booking.
    assert chosen(c("a", weight=100), c("b", weight=900, bookings=5, last=9)) == "b"
    # Weights 100 : 900, bookings 0 and 8 (shares of 9: 0.9 and 8.1): 100 against 900/9 = 100,
    # a tie: a, never booked.
    assert chosen(c("a", weight=100), c("b", weight=900, bookings=8, last=9)) == "a"
    # Equal weights: the one with fewer bookings, however recently it was booked.
    assert chosen(c("a", bookings=4, last=1), c("b", bookings=3, last=50)) == "b"
    # Only the kept (top-priority) hosts count towards the total.
    assert (
        chosen(
            c("a", weight=1, bookings=1),
            c("b", weight=1, bookings=0, last=10),
            c("x", "low", weight=1, bookings=1000),
        )
        == "b"
    )


def test_ties_go_to_the_least_recently_booked_then_member_id() -> None:
    # Same weight / (bookings + 1): never booked beats booked, older beats newer.
    assert chosen(c("a", bookings=0, last=5), c("b", bookings=0)) == "b"
    assert chosen(c("a", bookings=2, last=5), c("b", bookings=2, last=3)) == "b"
    # Everything equal: the smallest member_id, whatever the input order.
    assert chosen(c("user_b"), c("user_a")) == "user_a"
    assert chosen(c("user_a", last=2), c("user_b", last=2)) == "user_a"


def test_weight_zero_hosts_only_when_every_kept_weight_is_zero() -> None:
    # A weight-0 host never booked does not take the call while a weighted host is free...
    assert chosen(c("zero", weight=0), c("w", weight=10, bookings=7, last=1)) == "w"
    # ...but it does when it is the only free host of the top priority...
    assert chosen(c("zero", weight=0), c("w", "medium", weight=10)) == "zero"
    # ...and when all kept weights are 0 they share evenly (by bookings, then recency).
    assert chosen(c("a", weight=0, bookings=2), c("b", weight=0, bookings=1, last=9)) == "b"
    assert chosen(c("a", weight=0, bookings=1, last=1), c("b", weight=0, bookings=1, last=2)) == "a"


def test_candidate_validation() -> None:
    with pytest.raises(ValueError, match="weight"):
        c("a", weight=-1)
    with pytest.raises(ValueError, match="bookings"):
        c("a", bookings=-1)
    with pytest.raises(ValueError, match="aware"):
        Candidate("a", Priority.HIGH, 1, 0, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="urgent"):
        c("a", "urgent")
    assert Candidate("a", "low", 1, 0).priority is Priority.LOW  # type: ignore[arg-type]


candidates = st.lists(
    st.builds(
        c,
        st.text("abcdef", min_size=1, max_size=3),
        st.sampled_from(["high", "medium", "low"]),
        st.integers(0, 5),
        st.integers(0, 20),
        st.one_of(st.none(), st.integers(0, 48)),
    ),
    max_size=7,
    unique_by=lambda x: x.member_id,
)


@settings(max_examples=400, deadline=None)
@given(candidates, st.randoms(use_true_random=False))
def test_choice_follows_the_rules_and_ignores_input_order(
    pool: list[Candidate], rnd: random.Random
) -> None:
    host = choose_host(pool)
    if not pool:
        assert host is None
        return
    assert host is not None
    assert host in pool
    shuffled = list(pool)
    rnd.shuffle(shuffled)
    assert choose_host(shuffled) == host
    # Highest priority.
    top = max(x.priority.rank for x in pool)
    assert host.priority.rank == top
    kept = [x for x in pool if x.priority.rank == top]
    if any(x.weight > 0 for x in kept):
        assert host.weight > 0
        kept = [x for x in kept if x.weight > 0]
        weights = {x.member_id: x.weight for x in kept}
    else:
        weights = {x.member_id: 1 for x in kept}
    total_w = sum(weights.values())
    after = sum(x.bookings_this_period for x in kept) + 1

    def eligible(x: Candidate) -> bool:  # upper quota with this call counted
        return x.bookings_this_period < Fraction(weights[x.member_id] * after, total_w)

    def priority(x: Candidate) -> Fraction:
        return Fraction(weights[x.member_id], x.bookings_this_period + 1)

    assert eligible(host)
    best = max(priority(x) for x in kept if eligible(x))
    assert priority(host) == best
    tied = [x for x in kept if eligible(x) and priority(x) == best]
    never = [x for x in tied if x.last_booked_at is None]
    if never:
        assert host.last_booked_at is None
        assert host.member_id == min(x.member_id for x in never)
    else:
        assert host.last_booked_at == min(
            x.last_booked_at for x in tied if x.last_booked_at is not None
        )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=12), st.integers(1, 150))
def test_always_free_hosts_stay_within_one_booking_of_their_weighted_share(
    weights: list[int], rounds: int
) -> None:
    """Booking every call through choose_host: after every booking each host is within one
    booking of its weighted share, above and below (the quota property)."""
    bookings = [0] * len(weights)
    last: list[datetime | None] = [None] * len(weights)
    total_w = sum(weights)
    for n in range(rounds):
        pool = [
            Candidate(f"h{i}", Priority.HIGH, w, bookings[i], last[i])
            for i, w in enumerate(weights)
        ]
        host = choose_host(pool)
        assert host is not None
        i = int(host.member_id[1:])
        bookings[i] += 1
        last[i] = T0 + timedelta(minutes=n)
        total = n + 1
        for j, w in enumerate(weights):
            assert abs(bookings[j] - Fraction(w * total, total_w)) < 1

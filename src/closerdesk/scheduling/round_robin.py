"""Round robin: which free host gets the call. Pure, no I/O.

Rule source: docs/api.md "Round robin" — among free hosts keep the highest priority; then the
host owed the call by its weighted share of the period's bookings; tie → least recently booked.
Completed here with:

* **Weights.** Among the kept hosts, a host with weight 0 only takes calls when every kept host
  has weight 0 (then all count as weight 1, i.e. an even split). So weight 0 means "only when
  no weighted host of the same priority is free"; it never outranks priority.
* **Share: the quota method** (Balinski & Young, "The Quota Method of Apportionment", 1975).
  With ``W`` the sum of the kept weights and ``T`` the kept hosts' bookings this period, host
  ``h`` is owed ``share_h = weight_h / W`` of them. The call goes to a host that would not get a
  whole booking more than its share with it (``bookings_h < share_h × (T + 1)``), and among
  those to the largest ``weight_h / (bookings_h + 1)``. Compared exactly (integers and fractions),
  no floats.
* **Ties.** Equal ``weight / (bookings + 1)`` → least recently booked (never booked first,
  then the oldest ``last_booked_at``) → smallest ``member_id``, so the answer never depends on
  input order.
* **Caps** (docs/sales-floor.md "Round-robin controls"). A host may have a daily and a weekly
  cap on its live calls, counted in its own time zone (a day is a local calendar date, a week
  starts on a local Monday). A host at a cap for the call's day or week is no candidate at all
  (``Candidate.remaining == 0``), before priorities are looked at.
* **Fairness period.** The share is counted over ``month`` (the calendar month, UTC),
  ``week`` (the ISO week, UTC, from Monday 00:00) or ``rolling_30_days`` (the last 30 days):
  :func:`period_start`.

What the rule guarantees (the quota property, ``tests/scheduling/test_round_robin.py``): among
kept hosts that are always free, with fixed weights and no booking leaving the count, after
every booking each host's count is within one booking of its weighted share,
``|bookings_h − share_h × T| < 1``, above and below, for any number of hosts and any weights.
The first condition keeps every host under its share plus one; choosing by
``weight / (bookings + 1)`` among the rest keeps every host over its share minus one. A
booking that leaves the count (a cancellation, a missed call, one ageing out of a rolling
period, an expired hold) moves every share at once: its host falls further below and the
others rise above, until the next bookings even it out; ``bench/fairness.py`` measures both
cases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Literal
from zoneinfo import ZoneInfo


class Priority(StrEnum):
    """A host's round-robin priority on a booking link (docs/api.md ``hosts[].priority``)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Larger is preferred: high 3, medium 2, low 1."""
        return _RANK[self]


_RANK = {Priority.HIGH: 3, Priority.MEDIUM: 2, Priority.LOW: 1}
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Candidate:
    """A host free for the requested slot.

    ``weight``: integer ``>= 0`` (the API's default is 100); ``bookings_this_period``: the
    link's calls held by the host in the current period (month), ``>= 0``;
    ``last_booked_at``: aware datetime of the host's latest booking, ``None`` if
    never; ``remaining``: calls the host may still take on the call's day and week under its
    caps (:meth:`CapLoad.remaining`), ``None`` = no cap; ``0`` leaves the host out.
    ``ValueError`` for negative numbers or a naive ``last_booked_at``.
    """

    member_id: str
    priority: Priority
    weight: int
    bookings_this_period: int
    last_booked_at: datetime | None = None
    remaining: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "priority", Priority(self.priority))
        if self.weight < 0:
            raise ValueError(f"weight of {self.member_id} must be >= 0")
        if self.bookings_this_period < 0:
            raise ValueError(f"bookings_this_period of {self.member_id} must be >= 0")
        if self.last_booked_at is not None and self.last_booked_at.tzinfo is None:
            raise ValueError(f"last_booked_at of {self.member_id} must be aware")
        if self.remaining is not None and self.remaining < 0:
            raise ValueError(f"remaining of {self.member_id} must be >= 0")


def choose_host(candidates: Iterable[Candidate]) -> Candidate | None:
    """The candidate who gets the call, or ``None`` when there is none (→ 409
    ``NO_HOST_AVAILABLE`` upstream). Pass only hosts free for the slot.

    Order of rules (module docstring, docs/api.md): hosts at a cap out → highest priority →
    weight-0 hosts only if all kept weights are 0 → the quota method (not a whole booking above
    the share with this call; then the largest weight ÷ (bookings + 1)) → least recently booked
    (never booked first) → smallest ``member_id``. Deterministic and independent of input
    order.
    """
    pool = [c for c in candidates if c.remaining != 0]
    if not pool:
        return None
    top = max(c.priority.rank for c in pool)
    kept = [c for c in pool if c.priority.rank == top]
    weighted = [c for c in kept if c.weight > 0]
    if weighted:
        kept = weighted

    def weight(c: Candidate) -> int:
        return c.weight if weighted else 1  # all weights 0: an even split

    total_weight = sum(weight(c) for c in kept)
    after = sum(c.bookings_this_period for c in kept) + 1  # T + 1: this call counted
    # Upper quota: never a whole booking above the share. Not empty: the shares of T + 1 sum
    # to T + 1, more than the T bookings held, so some host holds less than its share of them.
    eligible = [c for c in kept if c.bookings_this_period * total_weight < weight(c) * after]

    def key(c: Candidate) -> tuple[Fraction, bool, datetime, str]:
        # min() wants smaller = better: the largest weight / (bookings + 1) first.
        priority = Fraction(weight(c), c.bookings_this_period + 1)
        booked = c.last_booked_at is not None
        return (-priority, booked, c.last_booked_at or _NEVER, c.member_id)

    return min(eligible, key=key)


def rank_hosts(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Every candidate not at a cap, in the order round robin would try them: the first is
    :func:`choose_host`'s pick, the second its pick once the first is gone (its calendar said
    no), and so on. The counts do not change between picks (nothing was booked)."""
    pool = list(candidates)
    order: list[Candidate] = []
    while (chosen := choose_host(pool)) is not None:
        order.append(chosen)
        pool.remove(chosen)
    return order


# --- fairness period -----------------------------------------------------------------------------
FairnessPeriod = Literal["month", "week", "rolling_30_days"]


def period_start(period: FairnessPeriod, now: datetime) -> datetime:
    """The start of the period round robin counts bookings over, for aware ``now``: ``month``
    → the first of the month 00:00 UTC; ``week`` → Monday 00:00 UTC of the ISO week;
    ``rolling_30_days`` → ``now − 30 days``. ``ValueError`` for another period or naive
    ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be aware")
    now = now.astimezone(UTC)
    if period == "month":
        return datetime(now.year, now.month, 1, tzinfo=UTC)
    if period == "week":
        monday = now.date() - timedelta(days=now.weekday())
        return datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
    if period == "rolling_30_days":
        return now - timedelta(days=30)
    raise ValueError(f"unknown fairness period {period!r}")


# --- caps ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caps:
    """A host's round-robin caps: at most ``per_day`` live calls on one local date and
    ``per_week`` in one local week (Monday first) of ``time_zone`` (IANA); ``None`` = no cap.
    ``ValueError`` for a cap below 1."""

    time_zone: str = "UTC"
    per_day: int | None = None
    per_week: int | None = None

    def __post_init__(self) -> None:
        for name in ("per_day", "per_week"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None")

    @property
    def any(self) -> bool:
        return self.per_day is not None or self.per_week is not None

    def day_and_week(self, at: datetime) -> tuple[date, date]:
        """The local date of ``at`` (aware) and the Monday starting its local week."""
        if at.tzinfo is None:
            raise ValueError("at must be aware")
        local = at.astimezone(ZoneInfo(self.time_zone)).date()
        return local, local - timedelta(days=local.weekday())


@dataclass(frozen=True)
class CapLoad:
    """A host's caps and its live calls counted per local date and per local week."""

    caps: Caps
    per_day: Mapping[date, int] = field(default_factory=dict)
    per_week: Mapping[date, int] = field(default_factory=dict)

    @classmethod
    def of(cls, caps: Caps, starts: Iterable[datetime]) -> CapLoad:
        """From the start times (aware) of the host's live calls; each counts on the local date
        it starts on."""
        days: Counter[date] = Counter()
        weeks: Counter[date] = Counter()
        for start in starts:
            day, week = caps.day_and_week(start)
            days[day] += 1
            weeks[week] += 1
        return cls(caps, days, weeks)

    def remaining(self, at: datetime) -> int | None:
        """How many more calls the host may take on the day and week of ``at`` (aware),
        ``>= 0``; ``None`` when it has no cap."""
        if not self.caps.any:
            return None
        day, week = self.caps.day_and_week(at)
        left: list[int] = []
        if self.caps.per_day is not None:
            left.append(self.caps.per_day - self.per_day.get(day, 0))
        if self.caps.per_week is not None:
            left.append(self.caps.per_week - self.per_week.get(week, 0))
        return max(0, min(left))


def within_caps(load: CapLoad, at: datetime) -> bool:
    """Whether the host may take one more call starting at ``at`` (aware) under its caps."""
    return load.remaining(at) != 0


__all__ = [
    "Candidate",
    "CapLoad",
    "Caps",
    "FairnessPeriod",
    "Priority",
    "choose_host",
    "period_start",
    "rank_hosts",
    "within_caps",
]

"""Round robin: which free host gets the call. Pure, no I/O.

Rule source: docs/api.md "Round robin" and issue 4 — among free hosts keep the highest priority;
then the host furthest below its weighted share of bookings in the current period (the current
month); tie → least recently booked. Completed here with:

* **Weights.** Among the kept hosts, a host with weight 0 only takes calls when every kept host
  has weight 0 (then all count as weight 1, i.e. an even split). So weight 0 means "only when
  no weighted host of the same priority is free"; it never outranks priority.
* **Share and deficit.** With ``W`` the sum of the kept weights and ``T`` the kept hosts'
  bookings this period, host ``h`` is owed ``share = weight_h / W`` of them and its deficit is
  ``share × T − bookings_h``. The largest deficit wins. Compared exactly in integers
  (``weight_h × T − bookings_h × W``), no floats.
* **Ties.** Equal deficits → least recently booked (never booked first, then the oldest
  ``last_booked_at``) → smallest ``member_id``, so the answer never depends on input order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


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
    never. ``ValueError`` for negative numbers or a naive ``last_booked_at``.
    """

    member_id: str
    priority: Priority
    weight: int
    bookings_this_period: int
    last_booked_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "priority", Priority(self.priority))
        if self.weight < 0:
            raise ValueError(f"weight of {self.member_id} must be >= 0")
        if self.bookings_this_period < 0:
            raise ValueError(f"bookings_this_period of {self.member_id} must be >= 0")
        if self.last_booked_at is not None and self.last_booked_at.tzinfo is None:
            raise ValueError(f"last_booked_at of {self.member_id} must be aware")


def choose_host(candidates: Iterable[Candidate]) -> Candidate | None:
    """The candidate who gets the call, or ``None`` when there is none (→ 409
    ``NO_HOST_AVAILABLE`` upstream). Pass only hosts free for the slot.

    Order of rules (module docstring, docs/api.md): highest priority → weight-0 hosts only if all
    kept weights are 0 → largest deficit against the weighted share → least recently booked
    (never booked first) → smallest ``member_id``. Deterministic and independent of input order.
    """
    pool = list(candidates)
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
    total_bookings = sum(c.bookings_this_period for c in kept)

    def key(c: Candidate) -> tuple[int, bool, datetime, str]:
        # deficit × W in exact integers; min() wants smaller = better, hence the negation.
        deficit = weight(c) * total_bookings - c.bookings_this_period * total_weight
        booked = c.last_booked_at is not None
        return (-deficit, booked, c.last_booked_at or _NEVER, c.member_id)

    return min(kept, key=key)


__all__ = ["Candidate", "Priority", "choose_host"]

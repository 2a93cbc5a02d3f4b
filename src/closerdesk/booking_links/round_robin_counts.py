"""What round robin counts of each host (docs/api.md "Round robin", docs/sales-floor.md
"Round-robin controls"): its bookings in the link's fairness period, its latest booking, and its
calls against its daily and weekly caps. Read from the database (SQL in
``round_robin_counts_repository.py``) and handed to the pure core (``scheduling/round_robin.py``)
as ``Candidate``s and ``CapLoad``s; the choice over real calendars is ``calls/assignment.py``.

**What counts.** A host's live booking calls (``calls.repository.live_booking_call``: booking
calls only, not cancelled or declined, not missed by the host; counted for the closer who holds
them now) and its live slot reservations (unconsumed, not expired; docs/sales-floor.md "Slot
reservations"). A hold counts like the call it is waiting to become: in the share of its link,
as the host's latest booking (when it was made) and against the caps on its start's day and
week. Booking with the reservation consumes it in the same transaction, and from then on the
call counts instead: never both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.booking_links import round_robin_counts_repository as repository
from closerdesk.models import BookingLink, TeamMember
from closerdesk.scheduling.round_robin import (
    Candidate,
    CapLoad,
    Caps,
    FairnessPeriod,
    Priority,
    period_start,
)

CAP_MARGIN = timedelta(days=8)
"""Around a range, the calls that can share a local day or week with a start inside it."""

_PERIODS: dict[str, FairnessPeriod] = {p: p for p in ("month", "week", "rolling_30_days")}


def fairness_of(link: BookingLink | None) -> FairnessPeriod:
    """The link's fairness period; ``month`` for a call without a link."""
    return "month" if link is None else _PERIODS[link.fairness_period]


def caps_of(member: TeamMember) -> Caps:
    """The member's round-robin caps (docs/sales-floor.md "Round-robin controls")."""
    return Caps(member.time_zone, member.max_bookings_per_day, member.max_bookings_per_week)


async def period_bookings(
    session: AsyncSession,
    organization_id: str,
    booking_link_id: str | None,
    member_ids: Sequence[str],
    period: FairnessPeriod,
    now: datetime,
) -> dict[str, int]:
    """Round robin's count of each member's bookings in the fairness period (one query): its
    live booking calls of the link (of any link when ``booking_link_id`` is None) created since
    :func:`period_start` and held now (a call reassigned away counts for its new closer only),
    plus its live slot reservations of the link made since then (module docstring). Members
    without any are absent."""
    if not member_ids:
        return {}
    return await repository.period_bookings(
        session, organization_id, booking_link_id, member_ids, period_start(period, now), now
    )


async def cap_loads(
    session: AsyncSession,
    organization_id: str,
    members: Sequence[TeamMember],
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    extra_starts: Mapping[str, Sequence[datetime]] | None = None,
    exclude_reservation_id: str | None = None,
) -> dict[str, CapLoad]:
    """For each member with a cap, its caps and its live booking calls and live slot
    reservations per local day and week, for starts in ``[start, end]`` (one query for all
    members; none without caps), plus ``extra_starts`` (calls planned but not written yet).
    ``exclude_reservation_id``: the reservation being booked, which must not count against the
    call it becomes."""
    caps = {m.id: caps_of(m) for m in members if caps_of(m).any}
    if not caps:
        return {}
    starts = await repository.cap_starts(
        session,
        organization_id,
        list(caps),
        start - CAP_MARGIN,
        end + CAP_MARGIN,
        now,
        exclude_reservation_id=exclude_reservation_id,
    )
    for member_id, planned in (extra_starts or {}).items():
        if member_id in starts:
            starts[member_id].extend(planned)
    return {member_id: CapLoad.of(caps[member_id], starts[member_id]) for member_id in caps}


@dataclass(frozen=True)
class PlannedBookings:
    """Bookings decided but not written yet (a bulk reassign's dry run, docs/sales-floor.md
    "Bulk reassign"), member id → what round robin would read from them once written:
    ``counted``, how many fall in the fairness period of the link asked about; ``starts``,
    their start times (UTC), which count against the caps; ``booked_at``, when the latest was
    made (the real run stamps ``last_booked_at``)."""

    counted: Mapping[str, int] = field(default_factory=dict)
    starts: Mapping[str, Sequence[datetime]] = field(default_factory=dict)
    booked_at: Mapping[str, datetime] = field(default_factory=dict)


NOTHING_PLANNED = PlannedBookings()


async def round_robin_candidates(
    session: AsyncSession,
    organization_id: str,
    booking_link_id: str | None,
    member_ids: Sequence[str],
    priorities: Mapping[str, tuple[str, int]],
    now: datetime,
    *,
    fairness_period: FairnessPeriod = "month",
    scheduled_at: datetime | None = None,
    planned: PlannedBookings = NOTHING_PLANNED,
) -> list[Candidate]:
    """The pure core's ``Candidate`` of each of ``member_ids`` (three queries at most):
    :func:`period_bookings`; the latest of ``last_booked_at`` and the member's live slot
    reservations; and, with ``scheduled_at``, how many calls the member may still take that
    local day and week under its caps (:func:`cap_loads`); each with the ``planned`` bookings
    added. ``priorities``: id → (priority, weight)."""
    if not member_ids:
        return []
    counts = await period_bookings(
        session, organization_id, booking_link_id, member_ids, fairness_period, now
    )
    members = await repository.members_with_latest_hold(session, organization_id, member_ids, now)
    loads = (
        await cap_loads(
            session,
            organization_id,
            [member for member, _ in members.values()],
            scheduled_at,
            scheduled_at,
            now=now,
            extra_starts=planned.starts,
        )
        if scheduled_at is not None
        else {}
    )

    def last_booked(member_id: str) -> datetime | None:
        member, held_at = members.get(member_id, (None, None))
        times = [
            member.last_booked_at if member else None,
            held_at,
            planned.booked_at.get(member_id),
        ]
        known = [t for t in times if t is not None]
        return max(known) if known else None

    return [
        Candidate(
            member_id=member_id,
            priority=Priority(priorities[member_id][0]),
            weight=priorities[member_id][1],
            bookings_this_period=counts.get(member_id, 0) + planned.counted.get(member_id, 0),
            last_booked_at=last_booked(member_id),
            remaining=(
                loads[member_id].remaining(scheduled_at)
                if scheduled_at is not None and member_id in loads
                else None
            ),
        )
        for member_id in member_ids
    ]

"""The SQL of round robin's counts (``booking_links/round_robin_counts.py``). Every query is
scoped to one organization and reads a host's live booking calls (``calls.repository.
live_booking_call`` with ``counting=True``) and its live slot reservations
(``reservations_repository.live``) together, in one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.booking_links import reservations_repository
from closerdesk.calls.repository import live_booking_call
from closerdesk.models import Call, SlotReservation, TeamMember


async def period_bookings(
    session: AsyncSession,
    organization_id: str,
    booking_link_id: str | None,
    member_ids: Sequence[str],
    since: datetime,
    now: datetime,
) -> dict[str, int]:
    """How many live booking calls each member holds, created since ``since``, plus its live
    slot reservations made since then, of the link (of any link when ``booking_link_id`` is
    None); member id → count, members without any absent."""
    calls = select(Call.closer_id.label("member_id")).where(
        Call.organization_id == organization_id,
        Call.closer_id.in_(list(member_ids)),
        live_booking_call(counting=True),
        Call.created_at >= since,
    )
    holds = select(SlotReservation.member_id.label("member_id")).where(
        reservations_repository.live(organization_id, member_ids, now),
        SlotReservation.created_at >= since,
    )
    if booking_link_id is not None:
        calls = calls.where(Call.booking_link_id == booking_link_id)
        holds = holds.where(SlotReservation.booking_link_id == booking_link_id)
    both = union_all(calls, holds).subquery()
    rows = await session.execute(select(both.c.member_id, func.count()).group_by(both.c.member_id))
    return {member_id: int(n) for member_id, n in rows.all() if member_id is not None}


async def cap_starts(
    session: AsyncSession,
    organization_id: str,
    member_ids: Sequence[str],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    exclude_reservation_id: str | None = None,
) -> dict[str, list[datetime]]:
    """The start times (UTC) in ``[start, end)`` of each member's live booking calls and live
    slot reservations (never ``exclude_reservation_id``); member id → starts, every member
    present."""
    calls = select(Call.closer_id, Call.scheduled_at).where(
        Call.organization_id == organization_id,
        Call.closer_id.in_(list(member_ids)),
        live_booking_call(counting=True),
        Call.scheduled_at >= start,
        Call.scheduled_at < end,
    )
    holds = select(SlotReservation.member_id, SlotReservation.starts_at).where(
        reservations_repository.live(
            organization_id, member_ids, now, exclude_reservation_id=exclude_reservation_id
        ),
        SlotReservation.starts_at >= start,
        SlotReservation.starts_at < end,
    )
    starts: dict[str, list[datetime]] = {member_id: [] for member_id in member_ids}
    for member_id, at in (await session.execute(calls.union_all(holds))).all():
        if member_id is not None and at is not None:
            starts[member_id].append(at)
    return starts


async def members_with_latest_hold(
    session: AsyncSession, organization_id: str, member_ids: Sequence[str], now: datetime
) -> dict[str, tuple[TeamMember, datetime | None]]:
    """The members among ``member_ids``, each with when its latest live slot reservation (of
    any link) was made (None without one); member id → both, a missing id absent."""
    latest = (
        select(func.max(SlotReservation.created_at))
        .where(
            reservations_repository.live(organization_id, member_ids, now),
            SlotReservation.member_id == TeamMember.id,
        )
        .correlate(TeamMember)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(TeamMember, latest).where(
            TeamMember.organization_id == organization_id, TeamMember.id.in_(list(member_ids))
        )
    )
    return {member.id: (member, held_at) for member, held_at in rows.all()}

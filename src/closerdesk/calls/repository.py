"""The SQL of calls. Every query is scoped to one organization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.models import Call, CallEvent, TeamMember


async def get_call(
    session: AsyncSession, organization_id: str, call_id: str, *, lock: bool = False
) -> Call | None:
    """The call, or None when missing or of another organization.

    ``lock`` takes a row lock (PostgreSQL ``FOR NO KEY UPDATE``) for the rest of the transaction.
    """
    stmt = select(Call).where(Call.organization_id == organization_id, Call.id == call_id)
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    return await session.scalar(stmt)


async def get_member(
    session: AsyncSession, organization_id: str, member_id: str, *, lock: bool = False
) -> TeamMember | None:
    """A team member of the organization; ``lock`` serialises bookings of that member."""
    stmt = select(TeamMember).where(
        TeamMember.organization_id == organization_id, TeamMember.id == member_id
    )
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    return await session.scalar(stmt)


async def lock_members(
    session: AsyncSession, organization_id: str, member_ids: Sequence[str]
) -> None:
    """Row-lock several members in id order (a fixed order: two transactions locking
    overlapping sets cannot deadlock)."""
    await session.execute(
        select(TeamMember.id)
        .where(TeamMember.organization_id == organization_id, TeamMember.id.in_(list(member_ids)))
        .order_by(TeamMember.id)
        .with_for_update(key_share=True)
    )


async def overlapping_calls(
    session: AsyncSession,
    organization_id: str,
    closer_id: str,
    start: datetime,
    end: datetime,
    *,
    exclude_call_id: str | None = None,
) -> Sequence[Call]:
    """Booking calls of the closer, not cancelled, that share time with ``[start, end)``."""
    stmt = select(Call).where(
        Call.organization_id == organization_id,
        Call.closer_id == closer_id,
        Call.call_kind == "booking",
        Call.status != "cancelled",
        Call.scheduled_at < end,
        Call.ends_at > start,
    )
    if exclude_call_id is not None:
        stmt = stmt.where(Call.id != exclude_call_id)
    return (await session.scalars(stmt.order_by(Call.scheduled_at))).all()


def list_calls_query(
    organization_id: str,
    *,
    status: str | None = None,
    lead_id: str | None = None,
    closer_id: str | None = None,
    setter_id: str | None = None,
    booking_link_id: str | None = None,
    scheduled_after: datetime | None = None,
    scheduled_before: datetime | None = None,
) -> Select[Call]:
    stmt = select(Call).where(Call.organization_id == organization_id)
    for column, value in (
        (Call.status, status),
        (Call.lead_id, lead_id),
        (Call.closer_id, closer_id),
        (Call.setter_id, setter_id),
        (Call.booking_link_id, booking_link_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if scheduled_after is not None:
        stmt = stmt.where(Call.scheduled_at >= scheduled_after)
    if scheduled_before is not None:
        stmt = stmt.where(Call.scheduled_at < scheduled_before)
    return stmt


async def history(session: AsyncSession, organization_id: str, call_id: str) -> Sequence[CallEvent]:
    return (
        await session.scalars(
            select(CallEvent)
            .where(CallEvent.organization_id == organization_id, CallEvent.call_id == call_id)
            .order_by(CallEvent.id)
        )
    ).all()


def filter_upcoming(stmt: Select[Call], now: datetime, *, upcoming: bool) -> Select[Call]:
    """Upcoming = not cancelled and ``scheduled_at`` in the future."""
    if upcoming:
        return stmt.where(and_(Call.status != "cancelled", Call.scheduled_at > now))
    return stmt.where(
        or_(Call.status == "cancelled", Call.scheduled_at.is_(None), Call.scheduled_at <= now)
    )

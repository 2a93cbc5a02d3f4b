"""The SQL of calendar connections and clean-up rows. Every query is scoped to one organization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.models import CalendarCleanup, CalendarConnection


async def get_connection(
    session: AsyncSession, organization_id: str, member_id: str
) -> CalendarConnection | None:
    """The member's connection (one per member), or None."""
    return await session.scalar(
        select(CalendarConnection).where(
            CalendarConnection.organization_id == organization_id,
            CalendarConnection.member_id == member_id,
        )
    )


async def get_connection_by_id(
    session: AsyncSession, organization_id: str, connection_id: str
) -> CalendarConnection | None:
    return await session.scalar(
        select(CalendarConnection).where(
            CalendarConnection.organization_id == organization_id,
            CalendarConnection.id == connection_id,
        )
    )


async def due_cleanups(
    session: AsyncSession, now: datetime, limit: int
) -> Sequence[CalendarCleanup]:
    """Unresolved clean-up rows due by ``now``, oldest first, claimed with ``FOR UPDATE SKIP
    LOCKED`` on PostgreSQL so that several workers never try one row twice."""
    return (
        await session.scalars(
            select(CalendarCleanup)
            .where(CalendarCleanup.resolved_at.is_(None), CalendarCleanup.next_attempt_at <= now)
            .order_by(CalendarCleanup.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()

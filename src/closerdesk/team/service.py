"""Team members, their calendar connections and busy time (docs/api.md, "Team")."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars import repository as calendars_repository
from closerdesk.calendars.busy import stored_busy
from closerdesk.calls import repository as calls_repository
from closerdesk.calls.conflicts import own_conflicts
from closerdesk.db import UniqueViolation, unique_write
from closerdesk.errors import (
    BusyBlockNotFound,
    MemberEmailTaken,
    MemberHasUpcomingCalls,
    MemberIdTaken,
    MemberNotFound,
    ValidationFailed,
)
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import BusyBlock, CalendarConnection, Call, TeamMember
from closerdesk.models.call import OPEN_STATUSES
from closerdesk.scheduling.intervals import Interval, merge
from closerdesk.team.schemas import (
    BusyBlockCreate,
    TeamMemberCreate,
    TeamMemberUpdate,
)

MAX_BUSY_RANGE = timedelta(days=92)
_NULLABLE = frozenset({"max_bookings_per_day", "max_bookings_per_week"})
"""Fields a PATCH may set to null (no cap)."""


async def get_member(session: AsyncSession, organization_id: str, member_id: str) -> TeamMember:
    """Raises ``MemberNotFound`` (404) when missing or of another organization."""
    member = await calls_repository.get_member(session, organization_id, member_id)
    if member is None:
        raise MemberNotFound()
    return member


async def connections_of(
    session: AsyncSession, organization_id: str, member_ids: list[str]
) -> dict[str, CalendarConnection]:
    """The calendar connection of each member that has one, in one query."""
    if not member_ids:
        return {}
    rows = await session.scalars(
        select(CalendarConnection).where(
            CalendarConnection.organization_id == organization_id,
            CalendarConnection.member_id.in_(member_ids),
        )
    )
    return {c.member_id: c for c in rows}


async def _email_taken(
    session: AsyncSession, organization_id: str, email: str, except_id: str | None = None
) -> bool:
    other = await session.scalar(
        select(TeamMember.id).where(
            TeamMember.organization_id == organization_id, TeamMember.email == email
        )
    )
    return other is not None and other != except_id


async def create_member(
    session: AsyncSession, organization_id: str, body: TeamMemberCreate
) -> TeamMember:
    """Raises ``MemberIdTaken``/``MemberEmailTaken`` (409)."""
    email = str(body.email).lower()
    member_id = body.id or f"user_{new_id('x')[2:]}"
    if await calls_repository.get_member(session, organization_id, member_id) is not None:
        raise MemberIdTaken()
    if await _email_taken(session, organization_id, email):
        raise MemberEmailTaken()
    member = TeamMember(
        organization_id=organization_id,
        id=member_id,
        name=body.name,
        email=email,
        role=body.role,
        time_zone=body.time_zone,
        is_active=True,
        max_bookings_per_day=body.max_bookings_per_day,
        max_bookings_per_week=body.max_bookings_per_week,
    )
    try:
        async with unique_write(session):
            session.add(member)
            await session.flush()
    except UniqueViolation as exc:  # a concurrent request took the id or the email
        if await calls_repository.get_member(session, organization_id, member_id) is not None:
            raise MemberIdTaken() from exc
        raise MemberEmailTaken() from exc
    return member


async def update_member(
    session: AsyncSession, organization_id: str, member_id: str, body: TeamMemberUpdate
) -> TeamMember:
    """Raises ``MemberNotFound`` (404), ``MemberEmailTaken`` and ``MemberHasUpcomingCalls``
    (409: deactivating, or making a setter of, a closer with upcoming calls)."""
    member = await calls_repository.get_member(session, organization_id, member_id, lock=True)
    if member is None:
        raise MemberNotFound()
    changes = body.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None and name not in _NULLABLE:
            raise ValidationFailed.field(name, "cannot be null")
    if "email" in changes:
        changes["email"] = str(changes["email"]).lower()
        if await _email_taken(session, organization_id, changes["email"], member.id):
            raise MemberEmailTaken()
    leaves_closing = changes.get("is_active") is False or changes.get("role") == "setter"
    if leaves_closing and await has_upcoming_calls(session, organization_id, member.id):
        raise MemberHasUpcomingCalls()
    for name, value in changes.items():
        setattr(member, name, value)
    if "name" in changes or "email" in changes:
        # The calls' copies (Aura Partner API: closer_name/closer_email) follow for upcoming calls;
        # past calls keep who the closer was then.
        await session.execute(
            update(Call)
            .where(
                Call.organization_id == organization_id,
                Call.closer_id == member.id,
                Call.status.in_(OPEN_STATUSES),
                Call.scheduled_at > utcnow(),
            )
            .values(closer_name=member.name, closer_email=member.email)
            .execution_options(synchronize_session=False)
        )
    await session.flush()
    return member


async def has_upcoming_calls(session: AsyncSession, organization_id: str, member_id: str) -> bool:
    """Whether the member closes a scheduled or pending call that has not started yet."""
    found = await session.scalar(
        select(Call.id)
        .where(
            Call.organization_id == organization_id,
            Call.closer_id == member_id,
            Call.status.in_(OPEN_STATUSES),
            Call.scheduled_at > utcnow(),
        )
        .limit(1)
    )
    return found is not None


async def add_busy_block(
    session: AsyncSession, organization_id: str, member_id: str, body: BusyBlockCreate
) -> BusyBlock:
    member = await get_member(session, organization_id, member_id)
    block = BusyBlock(
        id=new_id("busy"),
        organization_id=organization_id,
        member_id=member.id,
        starts_at=body.start,
        ends_at=body.end,
        title=body.title,
    )
    session.add(block)
    await session.flush()
    return block


async def list_busy_blocks(
    session: AsyncSession, organization_id: str, member_id: str
) -> list[BusyBlock]:
    member = await get_member(session, organization_id, member_id)
    rows = await session.scalars(
        select(BusyBlock)
        .where(BusyBlock.organization_id == organization_id, BusyBlock.member_id == member.id)
        .order_by(BusyBlock.starts_at, BusyBlock.id)
    )
    return list(rows)


async def delete_busy_block(
    session: AsyncSession, organization_id: str, member_id: str, block_id: str
) -> None:
    """Raises ``MemberNotFound``/``BusyBlockNotFound`` (404)."""
    member = await get_member(session, organization_id, member_id)
    block = await session.get(BusyBlock, block_id)
    if block is None or block.organization_id != organization_id or block.member_id != member.id:
        raise BusyBlockNotFound()
    await session.delete(block)
    await session.flush()


async def busy_intervals(
    session: AsyncSession,
    organization_id: str,
    member_id: str,
    start: datetime,
    end: datetime,
) -> list[Interval]:
    """Merged busy time in ``[start, end)``: the member's live calls and live slot
    reservations (what the conflict check reads, ``calls.conflicts.own_conflicts``) and
    calendar busy as closerdesk keeps it (the built-in calendar, the mirror of an external one).

    Raises ``ValidationFailed`` (400) for an empty range or one over 92 days,
    ``MemberNotFound`` (404).
    """
    if end <= start:
        raise ValidationFailed.field("end", "must be after start")
    if end - start > MAX_BUSY_RANGE:
        raise ValidationFailed.field("end", "the range spans at most 92 days")
    member = await get_member(session, organization_id, member_id)
    held = await own_conflicts(session, organization_id, [member.id], start, end)
    spans = [Interval(c.start, c.end) for c in held[member.id]]
    connection = await calendars_repository.get_connection(session, organization_id, member.id)
    if connection is not None:
        spans += (await stored_busy(session, [connection], start, end))[connection.id]
    else:
        # No calendar: the member's own busy blocks still count.
        blocks = await session.execute(
            select(BusyBlock.starts_at, BusyBlock.ends_at).where(
                BusyBlock.organization_id == organization_id,
                BusyBlock.member_id == member.id,
                BusyBlock.starts_at < end,
                BusyBlock.ends_at > start,
            )
        )
        spans += [Interval(s, e) for s, e in blocks.all()]
    clipped = [Interval(max(s.start, start), min(s.end, end)) for s in spans]
    return merge(clipped)

"""The SQL of calls. Every query is scoped to one organization, except ``public_call``: a signed
link names its call without one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Row,
    Select,
    and_,
    bindparam,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.booking_links import reservations_repository
from closerdesk.kit.rows import first_row, shaped
from closerdesk.kit.statements import Value, built_once
from closerdesk.models import (
    BookingLink,
    CalendarConnection,
    Call,
    CallEvent,
    Lead,
    SlotReservation,
    TeamMember,
)
from closerdesk.models.call import FREED_STATUSES, MAX_CALL_MINUTES

CALL_LOOKBACK = timedelta(minutes=MAX_CALL_MINUTES + 1)
"""How far before ``start`` a call sharing time with it may have started: the longest call
(``MAX_CALL_MINUTES``, a database check) plus a minute for the millisecond tolerance of that
check on SQLite."""


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


async def locked_call_with_lead(
    session: AsyncSession, organization_id: str, call_id: str
) -> tuple[Call, Lead, BookingLink | None] | None:
    """The call row-locked (PostgreSQL ``FOR NO KEY UPDATE`` of the call only), its lead and
    its booking link (None without one), in one query; None when the call is missing or of
    another organization.

    The lead and the link come from the snapshot the statement started with, even when it
    waited for the call's lock: no change that holds that lock edits them, and what is read
    of them (contact details, the link's description) is copied, not checked."""
    values = {"organization_id": organization_id, "call_id": call_id}
    row = (await session.execute(_locked_call_with_lead(), values)).first()
    return None if row is None else (row[0], row[1], row[2])


def _build_locked_call_with_lead() -> Select[Call, Lead, BookingLink]:
    """:func:`locked_call_with_lead`'s statement, built once (``closerdesk.kit.statements``)."""
    return (
        select(Call, Lead, BookingLink)
        .join(Lead, Lead.id == Call.lead_id)
        .outerjoin(
            BookingLink,
            and_(
                BookingLink.organization_id == Call.organization_id,
                BookingLink.id == Call.booking_link_id,
            ),
        )
        .where(
            Call.organization_id == bindparam("organization_id"),
            Call.id == bindparam("call_id"),
        )
        .with_for_update(key_share=True, of=Call)
    )


_locked_call_with_lead = built_once(_build_locked_call_with_lead)


async def call_row(
    session: AsyncSession, organization_id: str, call_id: str, schema: type[BaseModel]
) -> Row[Any] | None:
    """The call's columns that ``schema`` shows, as a Core row (``closerdesk.kit.rows``), or
    None when missing or of another organization."""
    return await first_row(
        session, _call_by_id(schema), {"organization_id": organization_id, "call_id": call_id}
    )


def _build_call_by_id(schema: type[BaseModel]) -> Select[Any]:
    """Built once per schema: reused, it is neither rebuilt nor re-keyed for SQLAlchemy's
    compiled cache per request."""
    stmt = select(Call).where(
        Call.organization_id == bindparam("organization_id"), Call.id == bindparam("call_id")
    )
    return shaped(stmt, schema)


_call_by_id = built_once(_build_call_by_id)


async def public_call(session: AsyncSession, call_id: str) -> tuple[Call, Lead] | None:
    """The call and its lead by id alone, for a link whose signature already names the call
    (``closerdesk.calls.ics_token``); None when the call is gone."""
    row = (
        await session.execute(
            select(Call, Lead).join(Lead, Lead.id == Call.lead_id).where(Call.id == call_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


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


async def locked_member_with_connections(
    session: AsyncSession, organization_id: str, member_id: str, *, connection_id: str | None
) -> tuple[TeamMember, list[CalendarConnection]] | None:
    """A team member row-locked (``FOR NO KEY UPDATE``: serialises bookings of that member),
    then its calendar connections and the connection ``connection_id`` names (whoever's it is);
    None when the member is missing or of another organization.

    Two statements on purpose: connecting or disconnecting a calendar holds the same lock, and
    on PostgreSQL a statement that waited for a lock still reads the other tables of its join
    from the snapshot it started with. Read after the lock, the connections are the ones the
    lock holder committed."""
    values = {"organization_id": organization_id, "member_id": member_id}
    member = await session.scalar(_locked_member(), values)
    if member is None:
        return None
    if connection_id is not None:
        values["connection_id"] = connection_id
    connections = await session.scalars(_member_connections(connection_id is not None), values)
    return member, list(connections.all())


def _build_locked_member() -> Select[TeamMember]:
    """The member row-locked by id, built once (``closerdesk.kit.statements``)."""
    return (
        select(TeamMember)
        .where(
            TeamMember.organization_id == bindparam("organization_id"),
            TeamMember.id == bindparam("member_id"),
        )
        .with_for_update(key_share=True)
    )


_locked_member = built_once(_build_locked_member)


def _build_member_connections(with_connection_id: bool) -> Select[CalendarConnection]:
    """The member's calendar connections, and the one ``connection_id`` names if given."""
    # Constants on both sides of the OR: PostgreSQL answers it with two index probes (a
    # BitmapOr), not a scan of the organization's connections.
    on = CalendarConnection.member_id == bindparam("member_id")
    if with_connection_id:
        on = or_(on, CalendarConnection.id == bindparam("connection_id"))
    return select(CalendarConnection).where(
        CalendarConnection.organization_id == bindparam("organization_id"), on
    )


_member_connections = built_once(_build_member_connections)


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


async def booking_link_description(session: AsyncSession, call: Call) -> str | None:
    """The public description of the call's booking link (None without a link or text)."""
    if call.booking_link_id is None:
        return None
    return await session.scalar(
        select(BookingLink.description).where(
            BookingLink.organization_id == call.organization_id,
            BookingLink.id == call.booking_link_id,
        )
    )


def live_booking_call(*, counting: bool = False) -> ColumnElement[bool]:
    """The one rule for "a live booking call": a booking call (an intent call has no time, and
    round robin never places one, so it neither holds time nor counts toward a host's share or
    caps) that is neither cancelled nor declined (``FREED_STATUSES``).

    ``counting=True`` is the call as round robin counts it for its closer (the fairness share
    and the daily and weekly caps): also not missed by the host (``host_no_show``: credit-back,
    docs/sales-floor.md "Round-robin controls"). Without it (busy time, conflicts, the calls a
    bulk reassign moves) a missed call still took its time."""
    live = and_(Call.call_kind == "booking", Call.status.not_in(FREED_STATUSES))
    return and_(live, Call.host_no_show.is_(False)) if counting else live


def overlaps(
    start: Value[datetime], end: Value[datetime], *, after: Value[datetime] | None = None
) -> ColumnElement[bool]:
    """Calls sharing time with ``[start, end)``; touching ends (``ends_at == start``) do not.

    ``scheduled_at < end AND ends_at > start`` alone is answered from
    ``ix_calls_closer_span`` (organization, closer, ``scheduled_at``) by reading every call of
    the closer that started before ``end``: all of its past. No call lasts longer than
    ``MAX_CALL_MINUTES`` (refused by the API and by the ``span_within_limit`` check), so one
    sharing time with ``[start, end)`` started after ``start - CALL_LOOKBACK``; with that lower
    bound the index range holds only the calls of that window, whatever the closer's history.
    Figures before and after: ``bench/explain_scans.py``.

    ``after`` is that lower bound, ``start - CALL_LOOKBACK``; a statement built once
    (``closerdesk.kit.statements``) gives it as a ``bindparam`` of its own.
    """
    return and_(
        Call.scheduled_at > (_lookback(start) if after is None else after),
        Call.scheduled_at < end,
        Call.ends_at > start,
    )


def _lookback(start: Value[datetime]) -> datetime:
    """``start - CALL_LOOKBACK`` for a value; raises ``TypeError`` for a ``bindparam``, whose
    difference would be SQL arithmetic rather than a bound value (pass ``after=``)."""
    if isinstance(start, BindParameter):
        raise TypeError("a bound start needs its own bound lower limit (after=)")
    return start - CALL_LOOKBACK


async def overlapping_calls(
    session: AsyncSession,
    organization_id: str,
    closer_id: str,
    start: datetime,
    end: datetime,
    *,
    exclude_call_id: str | None = None,
) -> Sequence[Call]:
    """Booking calls of the closer, not cancelled, that share time with ``[start, end)``
    (``overlaps``: reads only the calls of that window, not the closer's past)."""
    return await overlapping_calls_of(
        session, organization_id, [closer_id], start, end, exclude_call_id=exclude_call_id
    )


async def overlapping_calls_of(
    session: AsyncSession,
    organization_id: str,
    closer_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    exclude_call_id: str | None = None,
) -> Sequence[Call]:
    """:func:`overlapping_calls` for several closers in one query, by start time."""
    stmt = select(Call).where(
        Call.organization_id == organization_id,
        Call.closer_id.in_(list(closer_ids)),
        live_booking_call(),
        overlaps(start, end),
    )
    if exclude_call_id is not None:
        stmt = stmt.where(Call.id != exclude_call_id)
    return (await session.scalars(stmt.order_by(Call.scheduled_at, Call.id))).all()


async def closers_with_connections(
    session: AsyncSession, organization_id: str, roles: frozenset[str]
) -> Sequence[tuple[TeamMember, CalendarConnection | None]]:
    """Every active member of ``roles`` with its calendar connection (None without one), by
    name then id, in one query."""
    rows = await session.execute(
        select(TeamMember, CalendarConnection)
        .outerjoin(
            CalendarConnection,
            (CalendarConnection.organization_id == TeamMember.organization_id)
            & (CalendarConnection.member_id == TeamMember.id),
        )
        .where(
            TeamMember.organization_id == organization_id,
            TeamMember.is_active.is_(True),
            TeamMember.role.in_(list(roles)),
        )
        .order_by(TeamMember.name, TeamMember.id)
    )
    return [(member, connection) for member, connection in rows.all()]


async def overlapping_busy(
    session: AsyncSession,
    organization_id: str,
    closer_ids: Sequence[str],
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    exclude_call_id: str | None = None,
    exclude_reservation_id: str | None = None,
) -> Sequence[Row[str, str, str, datetime, datetime]]:
    """What of the closers' own holds shares time with ``[start, end)``, as ``(closer_id,
    source, id, start, end)`` rows in start order, in one round trip: ``("call", …)`` for the
    calls of :func:`overlapping_calls`, ``("reservation", …)`` for live slot reservations
    (docs/sales-floor.md, "Slot reservations"). The statement is built once per shape
    (``closerdesk.kit.statements``)."""
    values: dict[str, Any] = {
        "organization_id": organization_id,
        "closer_ids": list(closer_ids),
        "start": start,
        "end": end,
        "call_after": start - CALL_LOOKBACK,
        "hold_after": start - reservations_repository.HOLD_LOOKBACK,
        "now": now,
    }
    if exclude_call_id is not None:
        values["exclude_call_id"] = exclude_call_id
    if exclude_reservation_id is not None:
        values["exclude_reservation_id"] = exclude_reservation_id
    stmt = _overlapping_busy(exclude_call_id is not None, exclude_reservation_id is not None)
    rows: Sequence[Row[str, str, str, datetime, datetime]] = (
        await session.execute(stmt, values)
    ).all()
    return rows


def _build_overlapping_busy(exclude_call: bool, exclude_reservation: bool) -> Select[Any]:
    """:func:`overlapping_busy`'s statement, with or without its two exclusions."""
    organization_id: BindParameter[str] = bindparam("organization_id")
    closer_ids: BindParameter[Sequence[str]] = bindparam("closer_ids", expanding=True)
    start: BindParameter[datetime] = bindparam("start")
    end: BindParameter[datetime] = bindparam("end")
    calls = select(
        Call.closer_id.label("closer_id"),
        literal("call").label("source"),
        Call.id.label("id"),
        Call.scheduled_at.label("starts_at"),
        Call.ends_at.label("ends_at"),
    ).where(
        Call.organization_id == organization_id,
        Call.closer_id.in_(closer_ids),
        live_booking_call(),
        overlaps(start, end, after=bindparam("call_after")),
    )
    if exclude_call:
        calls = calls.where(Call.id != bindparam("exclude_call_id"))
    holds = select(
        SlotReservation.member_id,
        literal("reservation"),
        SlotReservation.id,
        SlotReservation.starts_at,
        SlotReservation.ends_at,
    ).where(
        reservations_repository.live_overlapping(
            organization_id, closer_ids, start, end, bindparam("now"), after=bindparam("hold_after")
        )
    )
    if exclude_reservation:
        holds = holds.where(SlotReservation.id != bindparam("exclude_reservation_id"))
    both = union_all(calls, holds).subquery()
    return select(both).order_by(both.c.starts_at, both.c.id)


_overlapping_busy = built_once(_build_overlapping_busy)


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
    reason_code: str | None = None,
    loss_reason: str | None = None,
) -> Select[Call]:
    """``GET /v1/calls``: the organization's calls matching every filter given (equality;
    ``scheduled_after`` inclusive, ``scheduled_before`` exclusive)."""
    stmt = select(Call).where(Call.organization_id == organization_id)
    for column, value in (
        (Call.status, status),
        (Call.lead_id, lead_id),
        (Call.closer_id, closer_id),
        (Call.setter_id, setter_id),
        (Call.booking_link_id, booking_link_id),
        (Call.reason_code, reason_code),
        (Call.loss_reason, loss_reason),
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
        return stmt.where(and_(Call.status.not_in(FREED_STATUSES), Call.scheduled_at > now))
    return stmt.where(
        or_(Call.status.in_(FREED_STATUSES), Call.scheduled_at.is_(None), Call.scheduled_at <= now)
    )


BATCH_COLUMNS = (
    Call.id,
    Call.call_kind,
    Call.status,
    Call.closer_id,
    Call.scheduled_at,
    Call.ends_at,
    Call.booking_link_id,
    Call.created_at,
)
"""What a bulk reassign reads of each call before it moves it (``calls/bulk.py``)."""
BatchRow = Row[str, str, str, str | None, datetime | None, datetime | None, str | None, datetime]
"""A row of ``BATCH_COLUMNS``."""


async def upcoming_calls_of_closer(
    session: AsyncSession,
    organization_id: str,
    closer_id: str,
    now: datetime,
    *,
    scheduled_after: datetime | None,
    scheduled_before: datetime | None,
    call_ids: Sequence[str] | None,
    limit: int,
) -> Sequence[BatchRow]:
    """The closer's upcoming booking calls (not cancelled or declined, ``scheduled_at`` after
    ``now``; ``scheduled_after`` inclusive, ``scheduled_before`` exclusive; only ``call_ids``
    when given), in ``scheduled_at`` then ``id`` order, at most ``limit``; rows of
    ``BATCH_COLUMNS``. Answered from ``ix_calls_closer_span``."""
    stmt = select(*BATCH_COLUMNS).where(
        Call.organization_id == organization_id,
        Call.closer_id == closer_id,
        live_booking_call(),
        Call.scheduled_at > now,
    )
    if scheduled_after is not None:
        stmt = stmt.where(Call.scheduled_at >= scheduled_after)
    if scheduled_before is not None:
        stmt = stmt.where(Call.scheduled_at < scheduled_before)
    if call_ids is not None:
        stmt = stmt.where(Call.id.in_(list(call_ids)))
    stmt = stmt.order_by(Call.scheduled_at, Call.id).limit(limit)
    return (await session.execute(stmt)).all()


async def calls_by_ids(
    session: AsyncSession, organization_id: str, call_ids: Sequence[str]
) -> dict[str, BatchRow]:
    """The organization's calls among ``call_ids`` (rows of ``BATCH_COLUMNS``) by id; a missing
    or foreign id is absent."""
    if not call_ids:
        return {}
    rows = await session.execute(
        select(*BATCH_COLUMNS).where(
            Call.organization_id == organization_id, Call.id.in_(list(call_ids))
        )
    )
    return {row.id: row for row in rows.all()}

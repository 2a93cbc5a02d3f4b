"""The SQL of slot reservations (docs/sales-floor.md, "Slot reservations"). Every query is
scoped to one organization.

A reservation is *live* (its host's time is busy) while no call consumed it (``call_id`` is
null) and ``expires_at`` is after now; the worker deletes the others (``closerdesk.retention``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import BindParameter, ColumnElement, Select, and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.kit.statements import Value
from closerdesk.models import BookingLink, SlotReservation
from closerdesk.models.base import epoch_us
from closerdesk.models.call import MAX_CALL_MINUTES

HOLD_LOOKBACK = timedelta(minutes=MAX_CALL_MINUTES + 1)
"""How far before ``start`` a hold sharing time with it may have started: a hold is a call's
span, so at most ``MAX_CALL_MINUTES`` long (the lower bound keeps the index range of
``ix_slot_reservations_member_span`` to the window, as ``calls.repository.overlaps`` does)."""


def live(
    organization_id: Value[str],
    member_ids: Value[Sequence[str]],
    now: Value[datetime],
    *,
    exclude_reservation_id: str | None = None,
) -> ColumnElement[bool]:
    """Live reservations of ``member_ids``: unconsumed, ``expires_at > now``; never
    ``exclude_reservation_id`` (the one being booked). ``member_ids`` as a ``bindparam`` is
    an expanding one (``closerdesk.kit.statements``)."""
    found = and_(
        SlotReservation.organization_id == organization_id,
        SlotReservation.member_id.in_(
            member_ids if isinstance(member_ids, BindParameter) else list(member_ids)
        ),
        SlotReservation.call_id.is_(None),
        SlotReservation.expires_at > now,
    )
    if exclude_reservation_id is not None:
        found = and_(found, SlotReservation.id != exclude_reservation_id)
    return found


def live_overlapping(
    organization_id: Value[str],
    member_ids: Value[Sequence[str]],
    start: Value[datetime],
    end: Value[datetime],
    now: Value[datetime],
    *,
    after: Value[datetime],
) -> ColumnElement[bool]:
    """Live reservations of ``member_ids`` sharing time with ``[start, end)`` (touching ends
    do not): unconsumed, ``expires_at > now``. ``after`` is the index's lower bound, ``start -
    HOLD_LOOKBACK`` (a statement built once binds it as a value of its own)."""
    return and_(
        live(organization_id, member_ids, now),
        SlotReservation.starts_at > after,
        SlotReservation.starts_at < end,
        SlotReservation.ends_at > start,
    )


def live_hold_spans(
    organization_id: Value[str],
    member_ids: Value[Sequence[str]],
    start: Value[datetime],
    end: Value[datetime],
    now: Value[datetime],
    *,
    after: Value[datetime],
) -> Select[str, int, int, int, int]:
    """Live holds in ``[start, end)`` as (member id, start, end in epoch microseconds computed
    by the database, the link's buffers before/after in minutes): the column shape of a call in
    ``booking_links.service.busy_spans_by_host``, so both go in one ``UNION ALL``. ``after`` as
    in :func:`live_overlapping`."""
    return (
        select(
            SlotReservation.member_id,
            epoch_us(SlotReservation.starts_at),
            epoch_us(SlotReservation.ends_at),
            BookingLink.buffer_before_minutes,
            BookingLink.buffer_after_minutes,
        )
        .join(BookingLink, BookingLink.id == SlotReservation.booking_link_id)
        .where(live_overlapping(organization_id, member_ids, start, end, now, after=after))
    )


async def get_reservation(
    session: AsyncSession,
    organization_id: str,
    reservation_id: str,
    *,
    lock: bool = False,
) -> SlotReservation | None:
    """The reservation, or None when missing or of another organization. ``lock`` row-locks it
    (``FOR UPDATE``): two bookings with one reservation, or a booking and a release, take turns.
    """
    stmt = select(SlotReservation).where(
        SlotReservation.organization_id == organization_id, SlotReservation.id == reservation_id
    )
    if lock:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def delete_reservation(session: AsyncSession, reservation: SlotReservation) -> None:
    await session.execute(delete(SlotReservation).where(SlotReservation.id == reservation.id))

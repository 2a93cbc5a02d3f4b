"""Slot reservations: hold an offered slot of a booking link while a lead fills in a form, and
release it (docs/sales-floor.md, "Slot reservations"; Cal.com: reserve a slot).

A reservation holds one host's time over the call's span until ``expires_at``
(``CLOSERDESK_RESERVATION_MINUTES`` after it was made): while live, that time is busy for the
host (slots, round robin, conflict checks; ``booking_links.service.busy_spans_by_host`` and
``calls.repository.overlapping_busy``), and it counts for the host as the call it may become
(its share of the link's bookings, its latest booking, its daily and weekly caps;
``booking_links/round_robin_counts.py``). Booking with it is ``calls/reserved.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.booking_links import reservations_repository, service
from closerdesk.calendars.unit_of_work import CalendarChange
from closerdesk.calls.assignment import round_robin_closer
from closerdesk.errors import (
    BookingLinkInactive,
    ReservationConsumed,
    ReservationNotFound,
    SlotInPast,
)
from closerdesk.kit.ids import new_id
from closerdesk.models import SlotReservation


async def reserve(
    session: AsyncSession,
    change: CalendarChange,
    organization_id: str,
    link_id: str,
    start: datetime,
    *,
    minutes: int,
    now: datetime,
) -> SlotReservation:
    """Hold the slot of the link starting at ``start`` (UTC) for ``minutes``; flushed.

    The slot must be offered (docs/api.md "Slots"). The host is the one booking there would
    get: the offered hosts are row-locked, checked again for the whole call, and ranked by the
    link's round robin, the first whose calendar confirms the time live wins
    (``calls.assignment.round_robin_closer``). So two requests for one slot take turns, and
    while another host is free the slot stays offered. Other live reservations count in that
    choice like bookings (shares, latest booking, caps), so reservations made close together
    are spread over the hosts as bookings would be.

    Raises ``BookingLinkNotFound`` (404), ``BookingLinkInactive`` (409), ``SlotInPast`` (400),
    ``SlotNotAvailable`` (409: not an offered slot, or no host free any more),
    ``CalendarProviderError`` (502).
    """
    link = await service.get_link(session, organization_id, link_id)
    if not link.is_active:
        raise BookingLinkInactive()
    if start <= now:
        raise SlotInPast()
    end = start + timedelta(minutes=link.duration_minutes)
    host = await round_robin_closer(session, change, link, start, end, now)
    reservation = SlotReservation(
        id=new_id("rsv"),
        organization_id=organization_id,
        booking_link_id=link.id,
        member_id=host.member.id,
        starts_at=start,
        ends_at=end,
        expires_at=now + timedelta(minutes=minutes),
    )
    session.add(reservation)
    await session.flush()
    return reservation


async def release(
    session: AsyncSession, organization_id: str, link_id: str, reservation_id: str
) -> None:
    """Release a reservation of the link: its time is free again at once (row deleted; an
    expired one too). Raises ``BookingLinkNotFound`` (404), ``ReservationNotFound`` (404:
    unknown, of another organization or link, or already released), ``ReservationConsumed``
    (409: a call was booked with it; cancel the call instead)."""
    await service.get_link(session, organization_id, link_id)
    reservation = await reservations_repository.get_reservation(
        session, organization_id, reservation_id, lock=True
    )
    if reservation is None or reservation.booking_link_id != link_id:
        raise ReservationNotFound()
    if reservation.call_id is not None:
        raise ReservationConsumed()
    await reservations_repository.delete_reservation(session, reservation)

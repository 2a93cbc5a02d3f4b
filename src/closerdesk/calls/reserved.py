"""Booking a reserved slot: ``POST /v1/calls`` with ``reservation_id`` (docs/sales-floor.md,
"Slot reservations").

The reservation already chose the host by the link's round robin; booking with it gives the call
to that host (no round robin again) and marks the reservation consumed in the same transaction.
The host's caps are checked again: a call may have been placed on it by name since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk import models
from closerdesk.booking_links import reservations_repository
from closerdesk.booking_links.round_robin_counts import cap_loads
from closerdesk.calendars.unit_of_work import CalendarChange
from closerdesk.calls.conflicts import require_free
from closerdesk.calls.steps import Closer, closer_with_calendar, require_valid
from closerdesk.errors import (
    ReservationConsumed,
    ReservationExpired,
    ReservationMismatch,
    ReservationNotFound,
    SlotNotAvailable,
)
from closerdesk.models import BookingLink, SlotReservation


@dataclass(frozen=True)
class Held:
    """A reservation being booked (row-locked) and its host (row-locked, calendar valid)."""

    reservation: SlotReservation
    closer: Closer


async def take(
    session: AsyncSession,
    change: CalendarChange,
    reservation_id: str,
    link: BookingLink,
    start: datetime,
    end: datetime,
    *,
    override_conflict: bool,
    now: datetime,
) -> Held:
    """The reservation ``reservation_id`` and its host, for a call of ``link`` over
    ``[start, end)`` (UTC).

    Checks, in order: the reservation exists in the link's organization (``ReservationNotFound``,
    404), no call consumed it yet (``ReservationConsumed``, 409), the call is for the
    reservation's link, exact start and duration (``ReservationMismatch``, 409), and it has not
    expired (``ReservationExpired``, 409). Then the host, row-locked, must still be an active
    closer (``CloserNotFound``, 404) with a valid calendar (``CalendarNotConnected``, 409),
    below its daily and weekly caps on ``start``'s day and week counting its live calls and
    other live reservations but not this one (``SlotNotAvailable``, 409: a call placed on the
    host by name since filled it; docs/sales-floor.md "Round-robin controls"), and free but for
    this reservation: calendar busy that appeared since, or a call placed with
    ``override_conflict``, answers ``CloserConflict`` (409) unless ``override_conflict``.
    """
    reservation = await reservations_repository.get_reservation(
        session, link.organization_id, reservation_id, lock=True
    )
    if reservation is None:
        raise ReservationNotFound()
    if reservation.call_id is not None:
        raise ReservationConsumed()
    if (reservation.booking_link_id, reservation.starts_at, reservation.ends_at) != (
        link.id,
        start,
        end,
    ):
        raise ReservationMismatch()
    if reservation.expires_at <= now:
        raise ReservationExpired()
    member, connection, _ = await closer_with_calendar(
        session, link.organization_id, reservation.member_id
    )
    closer = require_valid(member, connection, change.providers.secrets)
    loads = await cap_loads(
        session,
        link.organization_id,
        [member],
        start,
        start,
        now=now,
        exclude_reservation_id=reservation.id,
    )
    if member.id in loads and loads[member.id].remaining(start) == 0:
        raise SlotNotAvailable(
            "The reserved host reached its daily or weekly cap since the reservation was made."
        )
    await require_free(
        session,
        change,
        closer.account,
        start,
        end,
        exclude_call_id=None,
        override_conflict=override_conflict,
        exclude_reservation_id=reservation.id,
    )
    return Held(reservation, closer)


async def consume(session: AsyncSession, held: Held, call: models.Call) -> None:
    """Mark the reservation consumed by ``call`` (flushed; ``call`` must be flushed first: the
    reservation's ``call_id`` references it). It stops holding time: the call holds it now."""
    held.reservation.call_id = call.id
    await session.flush()

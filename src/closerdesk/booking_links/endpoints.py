"""``/v1/booking-links``: event types, their hosts and their slots (docs/api.md)."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import select

from closerdesk.auth.dependencies import ReadKey, WriteKey
from closerdesk.booking_links import reservations, service
from closerdesk.booking_links.schemas import (
    BookingLink,
    BookingLinkCreate,
    BookingLinkUpdate,
    Reservation,
    ReservationCreate,
    Slot,
)
from closerdesk.calendars.unit_of_work import calendar_change
from closerdesk.config import Settings
from closerdesk.db import Session
from closerdesk.errors import (
    BookingLinkInactive,
    BookingLinkNotFound,
    BookingLinkSlugTaken,
    CalendarProviderError,
    CloserNotFound,
    ReservationConsumed,
    ReservationNotFound,
    SlotInPast,
    SlotNotAvailable,
    responses,
)
from closerdesk.kit.pagination import Cursor, Limit, paginate
from closerdesk.kit.schemas import Envelope, ListEnvelope, TimeZoneName, UTCDateTime
from closerdesk.kit.time import utcnow
from closerdesk.models import BookingLink as BookingLinkRow
from closerdesk.providers import ProvidersDep

router = APIRouter(prefix="/v1/booking-links", tags=["booking links"])


@router.get("", response_model=ListEnvelope[BookingLink])
async def list_booking_links(
    session: Session,
    auth: ReadKey,
    is_active: bool | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListEnvelope[BookingLink]:
    """Booking links, oldest first, each with its hosts."""
    stmt = select(BookingLinkRow).where(BookingLinkRow.organization_id == auth.organization_id)
    if is_active is not None:
        stmt = stmt.where(BookingLinkRow.is_active == is_active)
    page = await paginate(session, stmt, keys=[BookingLinkRow.id], limit=limit, cursor=cursor)
    hosts = await service.hosts_of(session, [link.id for link in page.items])
    return page.envelope([service.link_schema(link, hosts[link.id]) for link in page.items])


@router.post(
    "",
    response_model=Envelope[BookingLink],
    status_code=status.HTTP_201_CREATED,
    responses=responses(CloserNotFound, BookingLinkSlugTaken),
)
async def create_booking_link(
    body: BookingLinkCreate, session: Session, auth: WriteKey
) -> Envelope[BookingLink]:
    """Create a booking link: duration, assignment (``round_robin``/``fixed``), minimum notice,
    buffers and slot interval (minutes), and hosts with priority, weight and a weekly schedule
    in their own IANA zone."""
    link = await service.create_link(session, auth.organization_id, body)
    hosts = await service.hosts_of(session, [link.id])
    return Envelope(data=service.link_schema(link, hosts[link.id]))


@router.get(
    "/{link_id}", response_model=Envelope[BookingLink], responses=responses(BookingLinkNotFound)
)
async def get_booking_link(link_id: str, session: Session, auth: ReadKey) -> Envelope[BookingLink]:
    """One booking link with its hosts."""
    link = await service.get_link(session, auth.organization_id, link_id)
    hosts = await service.hosts_of(session, [link.id])
    return Envelope(data=service.link_schema(link, hosts[link.id]))


@router.patch(
    "/{link_id}",
    response_model=Envelope[BookingLink],
    responses=responses(BookingLinkNotFound, CloserNotFound, BookingLinkSlugTaken),
)
async def update_booking_link(
    link_id: str, body: BookingLinkUpdate, session: Session, auth: WriteKey
) -> Envelope[BookingLink]:
    """Change a booking link; ``hosts`` replaces the whole list; ``is_active: false`` stops
    bookings through it."""
    link = await service.update_link(session, auth.organization_id, link_id, body)
    hosts = await service.hosts_of(session, [link.id])
    return Envelope(data=service.link_schema(link, hosts[link.id]))


@router.get(
    "/{link_id}/slots",
    response_model=Envelope[list[Slot]],
    responses=responses(BookingLinkNotFound, BookingLinkInactive),
)
async def get_slots(
    link_id: str,
    session: Session,
    auth: ReadKey,
    start: Annotated[UTCDateTime, Query(description="Range start (RFC 3339)")],
    end: Annotated[UTCDateTime, Query(description="Range end, at most 62 days after start")],
    time_zone: Annotated[TimeZoneName, Query(description="Zone of local_start")] = "UTC",
) -> Envelope[list[Slot]]:
    """Bookable start times in ``[start, end)``, in start order: every ``slot_interval`` where
    at least one host is free (availability − calls − calendar busy − buffers), honouring the
    minimum notice. Calendar busy time comes from closerdesk's mirror, never a live provider
    call. ``start``/``end`` in UTC and ``local_start`` in ``time_zone``. An inactive
    link offers nothing: 409 ``BOOKING_LINK_INACTIVE``, as booking through it answers."""
    link = await service.get_link(session, auth.organization_id, link_id)
    if not link.is_active:
        raise BookingLinkInactive()
    zone = ZoneInfo(time_zone)
    slots = await service.link_slots(session, link, start, end, utcnow())
    return Envelope(
        data=[
            Slot(start=s.start, end=s.end, local_start=s.start.astimezone(zone).isoformat())
            for s in slots
        ]
    )


@router.post(
    "/{link_id}/reservations",
    response_model=Envelope[Reservation],
    status_code=status.HTTP_201_CREATED,
    responses=responses(
        SlotInPast,
        BookingLinkNotFound,
        BookingLinkInactive,
        SlotNotAvailable,
        CalendarProviderError,
    ),
)
async def reserve_slot(
    link_id: str,
    body: ReservationCreate,
    request: Request,
    session: Session,
    auth: WriteKey,
    providers: ProvidersDep,
) -> Envelope[Reservation]:
    """Hold an offered slot of the link for ``CLOSERDESK_RESERVATION_MINUTES`` (default 5)
    while the lead fills in the booking form (docs/sales-floor.md, "Slot reservations"). One
    host is held, chosen by the link's round robin among the free hosts, and is not shown: the
    slot stays offered while another host is free. Book it with ``POST /v1/calls``
    ``{"booking_link_id", "scheduled_at": start, "reservation_id"}`` before ``expires_at``.
    Not an offered slot (or taken meanwhile): 409 ``SLOT_NOT_AVAILABLE``."""
    settings: Settings = request.app.state.settings
    async with calendar_change(session, providers) as change:
        held = await reservations.reserve(
            session,
            change,
            auth.organization_id,
            link_id,
            body.start,
            minutes=settings.reservation_minutes,
            now=utcnow(),
        )
        data = Reservation.model_validate(held)
    return Envelope(data=data)


@router.delete(
    "/{link_id}/reservations/{reservation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(BookingLinkNotFound, ReservationNotFound, ReservationConsumed),
)
async def release_slot(
    link_id: str, reservation_id: str, session: Session, auth: WriteKey
) -> Response:
    """Release a reservation: the slot is offered again at once. 404 ``BOOKING_LINK_NOT_FOUND``
    for a link not of the organization; 404 ``RESERVATION_NOT_FOUND`` when the reservation is
    unknown, of another link or organization, or already released; 409
    ``RESERVATION_CONSUMED`` once a call was booked with it (cancel the call instead)."""
    await reservations.release(session, auth.organization_id, link_id, reservation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

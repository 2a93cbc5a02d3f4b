"""Booking a call: ``POST /v1/calls`` (docs/api.md "Book").

The change writes its call event and its webhook event in its own transaction and only flushes:
the caller commits. The calendar event is made through the transaction's ``CalendarChange``
(``calendars/unit_of_work.py``).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk import models
from closerdesk.auth.service import AuthContext
from closerdesk.booking_links import service as booking_links
from closerdesk.calendars.unit_of_work import CalendarChange
from closerdesk.calls import repository, reserved
from closerdesk.calls.assignment import round_robin_closer
from closerdesk.calls.conflicts import flush_placement, require_free
from closerdesk.calls.schemas import (
    CallCreate,
)
from closerdesk.calls.steps import (
    actor,
    call_json,
    closer_with_calendar,
    place_on_calendar,
    record_change,
    require_active_closer,
    require_valid,
    set_closer,
)
from closerdesk.errors import (
    BookingLinkInactive,
    ProductInactive,
    SetterNotFound,
    SlotInPast,
)
from closerdesk.kit import required
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.leads.service import find_or_create, get_lead, lead_contact, lead_json
from closerdesk.models import BookingLink
from closerdesk.products.service import get_product
from closerdesk.webhooks.payloads import (
    CallBookedData,
    LeadCreatedData,
    LeadUpdatedData,
)
from closerdesk.webhooks.service import record_event

SETTER_ROLES = frozenset({"setter", "admin", "closer"})


# --- POST /v1/calls ------------------------------------------------------------------------------
async def book(
    session: AsyncSession, auth: AuthContext, change: CalendarChange, body: CallCreate
) -> models.Call:
    """Book a call (docs/api.md). Fires ``call.booked`` (and ``lead.created`` for a new lead).

    A booking through a link with ``requires_confirmation`` is ``pending``: it holds its slot
    but gets its calendar event and conferencing link only when confirmed
    (docs/sales-floor.md, "Confirmation").

    Raises ``LeadNotFound``, ``SetterNotFound``, ``ProductNotFound``, ``BookingLinkNotFound``
    (404), ``ProductInactive``, ``BookingLinkInactive`` (409), ``SlotInPast`` (400) and, for
    bookings, ``CloserNotFound`` (404), ``CalendarNotConnected``/``CloserConflict`` (409),
    ``SlotNotAvailable`` (409, round robin), ``CalendarProviderError`` (502); with
    ``reservation_id`` (docs/sales-floor.md, "Slot reservations"), ``ReservationNotFound``
    (404), ``ReservationConsumed``/``ReservationMismatch``/``ReservationExpired`` (409).
    """
    org = auth.organization_id
    now = utcnow()
    if body.lead_id is not None:
        lead, lead_created = await get_lead(session, org, body.lead_id), False
    else:
        inline = required(body.lead, "lead")  # the schema demands one of the two
        lead, lead_created = await find_or_create(
            session,
            org,
            email=str(inline.email),
            full_name=inline.full_name,
            phone=inline.phone,
            time_zone=inline.time_zone,
        )
    await check_setter(session, org, body.setter_id)
    await check_product(session, org, body.product_id, require_active=True)

    call = models.Call(
        id=new_id("call"),
        organization_id=org,
        call_kind=body.call_kind,
        status="scheduled",
        lead_id=lead.id,
        setter_id=body.setter_id,
        booking_link_id=body.booking_link_id,
        product_id=body.product_id,
        time_zone=body.time_zone or lead.time_zone,
        expected_deal_value=body.expected_deal_value,
        notes=body.notes,
        form_data=[f.model_dump(mode="json") for f in body.form_data],
        action_items=[],
        utm_source=body.utm_source,
        utm_medium=body.utm_medium,
        utm_campaign=body.utm_campaign,
        utm_term=body.utm_term,
        utm_content=body.utm_content,
        referral=body.referral,
        reschedule_count=0,
        sequence=0,
    )
    link = await _booking_link(session, org, body.booking_link_id)
    assignment = "manual"
    held: reserved.Held | None = None
    if body.call_kind == "booking":
        # The schema demands a time, and a closer or a booking link (whose duration applies).
        start = required(body.scheduled_at, "scheduled_at")
        minutes = body.duration_minutes or required(link, "booking link").duration_minutes
        end = start + timedelta(minutes=minutes)
        if start <= now:
            raise SlotInPast()
        if body.reservation_id is not None:  # the host the reservation holds (no round robin)
            held = await reserved.take(
                session,
                change,
                body.reservation_id,
                required(link, "booking link"),
                start,
                end,
                override_conflict=body.override_conflict,
                now=now,
            )
            chosen, assignment = held.closer, "round_robin"
            call.override_conflict = body.override_conflict
        elif body.closer_id is None:
            chosen = await round_robin_closer(
                session, change, required(link, "booking link"), start, end, now
            )
            assignment = "round_robin"
        else:
            closer, connection, _ = await closer_with_calendar(session, org, body.closer_id)
            chosen = require_valid(closer, connection, change.providers.secrets)
            await require_free(
                session,
                change,
                chosen.account,
                start,
                end,
                exclude_call_id=None,
                override_conflict=body.override_conflict,
            )
            call.override_conflict = body.override_conflict
        call.scheduled_at, call.ends_at, call.duration_minutes = start, end, minutes
        set_closer(call, chosen.member)
        if link is not None and link.requires_confirmation:
            # Holds the slot; event and link come with the confirmation (calls/confirmation.py).
            call.status = "pending"
        else:
            description = link.description if link else None
            await place_on_calendar(session, change, call, lead, chosen, description)
        chosen.member.last_booked_at = now
    elif body.closer_id is not None:
        intent_closer = await repository.get_member(session, org, body.closer_id)
        set_closer(call, require_active_closer(intent_closer))

    session.add(call)
    await flush_placement(session)
    if held is not None:
        await reserved.consume(session, held, call)
    after = call_json(call)
    record_change(session, call, auth, "booked", before={}, after=after)
    status_changed = lead.status == "new" and call.call_kind == "booking"
    if status_changed:
        lead.status = "booked"
        await session.flush()
    if lead_created:
        await record_event(session, org, LeadCreatedData(lead=lead_json(lead)))
    elif status_changed:
        await record_event(
            session,
            org,
            LeadUpdatedData(
                lead=lead_json(lead), changed_fields=["status"], previous={"status": "new"}
            ),
        )
    await record_event(
        session,
        org,
        CallBookedData(
            call=after, lead=lead_contact(lead), booked_by=actor(auth), assignment=assignment
        ),
    )
    return call


async def check_setter(session: AsyncSession, organization_id: str, setter_id: str | None) -> None:
    if setter_id is None:
        return
    setter = await repository.get_member(session, organization_id, setter_id)
    if setter is None or not setter.is_active or setter.role not in SETTER_ROLES:
        raise SetterNotFound()


async def check_product(
    session: AsyncSession, organization_id: str, product_id: str | None, *, require_active: bool
) -> None:
    if product_id is None:
        return
    product = await get_product(session, organization_id, product_id)  # 404 ProductNotFound
    if require_active and not product.is_active:
        raise ProductInactive()


async def _booking_link(
    session: AsyncSession, organization_id: str, link_id: str | None
) -> BookingLink | None:
    """The call's booking link. Raises ``BookingLinkNotFound`` (404), ``BookingLinkInactive``
    (409)."""
    if link_id is None:
        return None
    link = await booking_links.get_link(session, organization_id, link_id)
    if not link.is_active:
        raise BookingLinkInactive()
    return link

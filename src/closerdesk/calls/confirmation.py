"""Confirming and declining a pending call (Cal.com API v2: confirm / decline a booking that
requires a confirmation; its "requires confirmation" event types). docs/sales-floor.md,
"Confirmation".

A call booked through a link with ``requires_confirmation`` is ``pending``: it holds its slot
(busy time for its closer, counted by round robin, kept out of double booking) but has no
calendar event and no conferencing link. Confirming places it on the closer's calendar with the
steps booking uses (``steps.place_on_calendar``); declining frees the slot.

Each change writes its history row and its webhook outbox row in its transaction and only
flushes: the caller commits (the calendar event through the transaction's ``CalendarChange``).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk import models
from closerdesk.auth.service import AuthContext
from closerdesk.calendars.unit_of_work import CalendarChange
from closerdesk.calls.conflicts import require_free
from closerdesk.calls.schemas import Confirm, Decline
from closerdesk.calls.steps import (
    actor,
    closer_with_calendar,
    is_pending,
    locked_call,
    locked_call_with_lead,
    place_on_calendar,
    record_fields_change,
    require_valid,
    snapshot,
)
from closerdesk.errors import CallInPast, CallNotPending, CloserNotFound
from closerdesk.kit import required
from closerdesk.kit.time import utcnow
from closerdesk.leads.service import get_lead, lead_contact
from closerdesk.webhooks.payloads import CallConfirmedData, CallDeclinedData
from closerdesk.webhooks.service import record_event

CONFIRM_FIELDS = ("status", "confirmed_at", "calendar_event_id", "conferencing_link")
DECLINE_FIELDS = ("status", "declined_at", "decline_reason")


# --- POST /v1/calls/{id}/confirm -----------------------------------------------------------------
async def confirm(
    session: AsyncSession,
    auth: AuthContext,
    change: CalendarChange,
    call_id: str,
    body: Confirm,
) -> models.Call:
    """Make a pending call ``scheduled``: set ``confirmed_at``, issue its conferencing link and
    create its event on the closer's calendar. Fires ``call.confirmed``.

    The slot was held against other closerdesk bookings since the booking, but not against the
    closer's own calendar: it is asked live again, and foreign busy time there refuses the
    confirmation (``CloserConflict``) unless ``override_conflict`` (or the call was booked with
    it). Raises ``CallNotFound`` (404), ``CallNotPending``, ``CallInPast`` (409),
    ``CloserNotFound`` (404: the closer was removed), ``CalendarNotConnected``,
    ``CloserConflict`` (409), ``CalendarProviderError`` (502: nothing changed, still pending).
    """
    call, lead, link = await locked_call_with_lead(session, auth, call_id)
    if not is_pending(call):
        raise CallNotPending()
    start = required(call.scheduled_at, "scheduled_at")  # only booking calls are pending
    if start <= utcnow():
        raise CallInPast()
    closer_id = call.closer_id
    if closer_id is None:
        raise CloserNotFound()
    closer, connection, _ = await closer_with_calendar(session, auth.organization_id, closer_id)
    chosen = require_valid(closer, connection, change.providers.secrets)
    await require_free(
        session,
        change,
        chosen.account,
        start,
        required(call.ends_at, "ends_at"),
        exclude_call_id=call.id,
        override_conflict=body.override_conflict or call.override_conflict,
    )
    before = snapshot(call, CONFIRM_FIELDS)
    call.status, call.confirmed_at = "scheduled", utcnow()
    call.sequence += 1  # the .ics goes from TENTATIVE to CONFIRMED
    await place_on_calendar(session, change, call, lead, chosen, link.description if link else None)
    await session.flush()
    after = record_fields_change(session, call, auth, "confirmed", before)
    await record_event(
        session,
        call.organization_id,
        CallConfirmedData(call=after, lead=lead_contact(lead), confirmed_by=actor(auth)),
    )
    return call


# --- POST /v1/calls/{id}/decline -----------------------------------------------------------------
async def decline(
    session: AsyncSession, auth: AuthContext, call_id: str, body: Decline
) -> models.Call:
    """Make a pending call ``declined``: ``declined_at``, ``decline_reason`` and
    ``reason_code`` set, its slot free again (bookable, offered, not counted by round robin).
    A pending call has no calendar event or link, so nothing else changes. Fires
    ``call.declined``.

    Works whenever the call is pending, also once its time has passed: a request nobody
    answered is closed this way. Raises ``CallNotFound`` (404), ``CallNotPending`` (409).
    """
    call = await locked_call(session, auth, call_id)
    if not is_pending(call):
        raise CallNotPending()
    before = snapshot(call, DECLINE_FIELDS)
    call.status, call.declined_at, call.decline_reason = "declined", utcnow(), body.reason
    call.reason_code = body.reason_code
    call.sequence += 1  # the .ics becomes a cancellation
    await session.flush()
    after = record_fields_change(
        session, call, auth, "declined", before, reason=body.reason, reason_code=body.reason_code
    )
    lead = await get_lead(session, call.organization_id, call.lead_id)
    await record_event(
        session,
        call.organization_id,
        CallDeclinedData(
            call=after,
            lead=lead_contact(lead),
            reason=body.reason,
            reason_code=body.reason_code,
            declined_by=actor(auth),
        ),
    )
    return call

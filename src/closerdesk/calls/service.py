"""The rules of calls that change a call in place: outcome, reschedule, cancel, update
(docs/api.md). Booking is ``calls/booking.py``, reassign ``calls/reassign.py``, the steps they
share ``calls/steps.py``.

Every state change writes its call event and its webhook event in the transaction of the
change, and only flushes: the caller commits. The operations that touch a calendar take the
``CalendarChange`` of that transaction (``calendars/unit_of_work.py``), which creates, moves
and removes events, undoes them if the change does not commit, and commits once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk import models
from closerdesk.auth.service import AuthContext
from closerdesk.calendars.drafts import event_draft
from closerdesk.calendars.unit_of_work import CalendarChange
from closerdesk.calls.booking import check_product, check_setter
from closerdesk.calls.conflicts import flush_placement, require_free
from closerdesk.calls.reassign import REASSIGN_FIELDS, announce_reassign, change_closer
from closerdesk.calls.schemas import (
    CallUpdate,
    CancelReasonCode,
    ConflictItem,
    OutcomeSet,
    Reschedule,
)
from closerdesk.calls.steps import (
    actor,
    call_json,
    closer_with_calendar,
    is_pending,
    locked_call,
    locked_call_with_lead,
    old_event,
    record_change,
    record_fields_change,
    require_confirmed_call,
    require_not_freed,
    require_slot_call,
    require_valid,
    snapshot,
)
from closerdesk.errors import (
    CallInPast,
    CallLeadMismatch,
    CallNotStarted,
    CloserNotFound,
    PaymentAlreadyLinked,
    PaymentNotFound,
    SlotInPast,
)
from closerdesk.kit import required
from closerdesk.kit.time import utcnow
from closerdesk.leads.service import get_lead, lead_contact
from closerdesk.webhooks.payloads import (
    CallCancelledData,
    CallNoShowData,
    CallOutcomeSetData,
    CallRescheduledData,
    CallUpdatedData,
)
from closerdesk.webhooks.service import record_event


# --- POST /v1/calls/{id}/outcome -----------------------------------------------------------------
async def set_outcome(
    session: AsyncSession, auth: AuthContext, call_id: str, body: OutcomeSet
) -> models.Call:
    """Aura: set call outcome. Fires ``call.outcome_set`` (and ``call.no_show`` for ``no_show``).

    Raises ``CallNotFound`` (404), ``CallCancelled``, ``CallDeclined``, ``CallNotConfirmed``
    (a pending call) and ``CallNotStarted`` (409). An outcome may be corrected later; the
    history keeps every value. ``loss_reason`` goes with ``lost`` only (the body refuses it
    otherwise); any outcome sets it, so another outcome clears it (docs/sales-floor.md,
    "Reason codes").
    """
    call = await locked_call(session, auth, call_id)
    require_confirmed_call(call)
    if call.scheduled_at is not None and call.scheduled_at > utcnow():
        raise CallNotStarted()
    fields = ["status", "notes", "loss_reason"]
    before = snapshot(call, fields)
    call.status = body.status
    call.loss_reason = body.loss_reason
    if body.notes is not None:
        call.notes = body.notes
    await session.flush()
    after = record_fields_change(session, call, auth, "outcome_set", before)
    lead = await get_lead(session, call.organization_id, call.lead_id)
    data = CallOutcomeSetData(
        call=after,
        lead=lead_contact(lead),
        previous_status=before["status"],
        loss_reason=body.loss_reason,
        set_by=actor(auth),
    )
    await record_event(session, call.organization_id, data)
    if body.status == "no_show":
        no_show = CallNoShowData.model_validate(data.model_dump())
        await record_event(session, call.organization_id, no_show)
    return call


# --- POST /v1/calls/{id}/reschedule --------------------------------------------------------------
@dataclass(frozen=True)
class RescheduleOutcome:
    call: models.Call
    is_slot_free: bool
    conflicts: list[ConflictItem]
    previous_scheduled_at: datetime | None


async def reschedule(
    session: AsyncSession,
    auth: AuthContext,
    change: CalendarChange,
    call_id: str,
    body: Reschedule,
) -> RescheduleOutcome:
    """After eventCalls' reschedule: move a booked upcoming call, optionally to a new closer.

    Raises ``CallNotFound`` (404), ``CallNotReassignable``, ``CallCancelled``, ``CallInPast``
    (409), ``SlotInPast`` (400), ``CloserNotFound`` (404), ``CalendarNotConnected`` and
    ``CloserConflict`` (409, unless ``override_conflict``), ``CalendarProviderError`` (502).
    Fires ``call.rescheduled`` (and ``call.closer_reassigned`` when the closer changes).
    ``reason_code`` becomes the call's ``reason_code`` (docs/sales-floor.md, "Reason codes").
    A ``pending`` call stays pending, without event or link (docs/sales-floor.md,
    "Confirmation").
    """
    org = auth.organization_id
    now = utcnow()
    call, lead, link = await locked_call_with_lead(session, auth, call_id)
    require_slot_call(call, now)
    if body.scheduled_at <= now:
        raise SlotInPast()
    previous_at = required(call.scheduled_at, "scheduled_at")  # a booking call has both
    previous_minutes = required(call.duration_minutes, "duration_minutes")
    minutes = body.duration_minutes or previous_minutes
    start, end = body.scheduled_at, body.scheduled_at + timedelta(minutes=minutes)

    closer_id = body.new_closer_id or call.closer_id
    if closer_id is None:
        raise CloserNotFound()
    changing_closer = closer_id != call.closer_id
    closer, connection, old_connection = await closer_with_calendar(
        session, org, closer_id, old_grant_id=call.calendar_grant_id
    )
    chosen = require_valid(closer, connection, change.providers.secrets)
    conflicts = await require_free(
        session,
        change,
        chosen.account,
        start,
        end,
        exclude_call_id=call.id,
        override_conflict=body.override_conflict,
    )

    fields = [
        "scheduled_at",
        "duration_minutes",
        "time_zone",
        "notes",
        "reason_code",
        *REASSIGN_FIELDS,
    ]
    before = snapshot(call, fields)
    previous_id, previous_name = call.closer_id, call.closer_name
    # A new event when the closer changes, or when the call's event is not on the closer's
    # current calendar (it was disconnected and connected again); else the event moves.
    needs_new_event = (
        changing_closer
        or call.calendar_event_id is None
        or call.calendar_grant_id != chosen.account.connection_id
    )
    pending = is_pending(call)  # stays pending: no event, no link until confirmed
    conferencing = change.providers.conferencing(session)
    new_link = (
        await conferencing.issue_link(org, call.id) if changing_closer and not pending else None
    )
    description = link.description if link else None
    new_draft = event_draft(
        call,
        lead,
        closer_name=chosen.member.name,
        booking_link_description=description,
        starts_at=start,
        minutes=minutes,
        link=new_link,
        sequence=call.sequence + 1,
    )
    box = change.providers.secrets
    old = await old_event(session, box, call, old_connection) if needs_new_event else None
    event_id: str | None
    if pending:
        event_id = None
    elif needs_new_event:
        event_id = await change.create(chosen.account, new_draft)
    else:
        event_id = required(call.calendar_event_id, "calendar_event_id")
        previous = event_draft(
            call,
            lead,
            closer_name=call.closer_name,
            booking_link_description=description,
            starts_at=previous_at,
            minutes=previous_minutes,
        )
        await change.move(chosen.account, event_id, new_draft, previous)

    # Time, closer and override reach the database in one flush: a flush of half of them
    # (the new time with the old closer) could share time with a call it never will.
    with session.no_autoflush:
        call.scheduled_at, call.ends_at, call.duration_minutes = start, end, minutes
        if body.time_zone is not None:
            call.time_zone = body.time_zone
        if body.notes is not None:
            call.notes = body.notes
        call.reschedule_count += 1
        call.reason_code = body.reason_code
        if changing_closer:
            await change_closer(
                session,
                change,
                call,
                chosen,
                event_id,
                new_link,
                body.override_conflict,
            )
        else:
            call.calendar_event_id = event_id
            call.calendar_grant_id = None if event_id is None else chosen.account.connection_id
            call.override_conflict = body.override_conflict
            call.sequence += 1
            await flush_placement(session)
    after = record_fields_change(
        session, call, auth, "rescheduled", before, reason=body.reason, reason_code=body.reason_code
    )
    await record_event(
        session,
        org,
        CallRescheduledData(
            call=after,
            lead=lead_contact(lead),
            previous_scheduled_at=before["scheduled_at"],
            scheduled_at=after["scheduled_at"],
            reason=body.reason,
            reason_code=body.reason_code,
            rescheduled_by=actor(auth),
            is_slot_free=not conflicts,
        ),
    )
    if changing_closer:
        await announce_reassign(
            session,
            auth,
            call,
            lead,
            event_id,
            (previous_id, previous_name),
            body.reason,
            after,
            "manual",
            reason_code=body.reason_code,
        )
    if old is not None:
        await change.remove(*old, call.id)
    return RescheduleOutcome(call, not conflicts, conflicts, previous_at)


# --- POST /v1/calls/{id}/cancel ------------------------------------------------------------------
async def cancel(
    session: AsyncSession,
    auth: AuthContext,
    change: CalendarChange,
    call_id: str,
    reason: str | None,
    *,
    reason_code: CancelReasonCode | None = None,
) -> models.Call:
    """Cancel an upcoming call: the link is revoked and the calendar event handed to
    ``change`` for removal. ``reason_code`` (a ``CancelReasonCode``) becomes the call's
    ``reason_code`` (docs/sales-floor.md, "Reason codes").

    Raises ``CallNotFound`` (404), ``CallCancelled``, ``CallDeclined`` and ``CallInPast``
    (409). A pending call may be cancelled (it has no event or link yet).
    Fires ``call.cancelled``.
    """
    call = await locked_call(session, auth, call_id)
    require_not_freed(call)
    if call.scheduled_at is not None and call.scheduled_at <= utcnow():
        raise CallInPast()
    before = snapshot(call, ["status", "cancelled_at", "cancel_reason", "reason_code"])
    call.status, call.cancelled_at, call.cancel_reason = "cancelled", utcnow(), reason
    call.reason_code = reason_code
    call.sequence += 1
    if call.conferencing_link is not None:
        await change.providers.conferencing(session).revoke_link(
            call.organization_id, call.conferencing_link
        )
    await session.flush()
    after = record_fields_change(
        session, call, auth, "cancelled", before, reason=reason, reason_code=reason_code
    )
    lead = await get_lead(session, call.organization_id, call.lead_id)
    await record_event(
        session,
        call.organization_id,
        CallCancelledData(
            call=after,
            lead=lead_contact(lead),
            reason=reason,
            reason_code=reason_code,
            cancelled_by=actor(auth),
        ),
    )
    old = await old_event(session, change.providers.secrets, call)
    if old is not None:
        await change.remove(*old, call.id)
    return call


# --- PATCH /v1/calls/{id} ------------------------------------------------------------------------
async def update(
    session: AsyncSession, auth: AuthContext, call_id: str, body: CallUpdate
) -> models.Call:
    """Partial update (fields present in the body only). Fires ``call.updated``.

    Raises ``CallNotFound``, ``ProductNotFound``, ``SetterNotFound``, ``PaymentNotFound`` (404),
    ``PaymentAlreadyLinked``, ``CallLeadMismatch`` (409).
    """
    call = await locked_call(session, auth, call_id)
    changes = body.model_dump(mode="python", exclude_unset=True)
    if not changes:
        return call
    if "action_items" in changes and changes["action_items"] is None:
        changes["action_items"] = []  # a list on the wire (Aura: get call): null clears it to empty
    org = call.organization_id
    if changes.get("product_id") is not None:
        await check_product(session, org, changes["product_id"], require_active=False)
    if changes.get("setter_id") is not None:
        await check_setter(session, org, changes["setter_id"])
    if changes.get("linked_payment_id") is not None:
        await _link_payment(session, call, changes["linked_payment_id"])
    if "linked_payment_id" in changes:
        await unlink_previous_payment(session, call, changes["linked_payment_id"])
    if changes.get("guest_rsvp_status") is not None:
        changes["guest_rsvp_confirmed_at"] = utcnow()
    fields = sorted(changes)
    before = snapshot(call, fields)
    for name in fields:
        setattr(call, name, changes[name])
    if "notes" in changes and changes["notes"] != before["notes"]:
        call.sequence += 1  # the notes are in the calendar event's description (ICS)
    await session.flush()
    after = call_json(call)
    after_fields = {k: after[k] for k in fields}
    if after_fields == before:
        return call
    await record_call_change(session, call, auth, before=before, after=after_fields)
    return call


async def record_call_change(
    session: AsyncSession,
    call: models.Call,
    auth: AuthContext,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """History row ``updated`` and a ``call.updated`` event for fields changed in place."""
    record_change(session, call, auth, "updated", before=before, after=after)
    await record_event(
        session,
        call.organization_id,
        CallUpdatedData(
            call=call_json(call),
            changed_fields=sorted(after),
            previous=before,
            updated_by=actor(auth),
        ),
    )


async def unlink_previous_payment(
    session: AsyncSession, call: models.Call, new_payment_id: str | None
) -> None:
    """The payment this call no longer links (cleared or replaced) is free to link elsewhere."""
    if call.linked_payment_id is None or call.linked_payment_id == new_payment_id:
        return
    previous = await session.get(models.Payment, call.linked_payment_id)
    if previous is not None and previous.call_id == call.id:
        previous.call_id = None


async def _link_payment(session: AsyncSession, call: models.Call, payment_id: str) -> None:
    payment = await session.get(models.Payment, payment_id)
    if payment is None or payment.organization_id != call.organization_id:
        raise PaymentNotFound()
    if payment.lead_id != call.lead_id:
        raise CallLeadMismatch()
    if payment.call_id is not None and payment.call_id != call.id:
        raise PaymentAlreadyLinked()
    payment.call_id = call.id

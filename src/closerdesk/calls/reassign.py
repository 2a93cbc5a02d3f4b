"""Reassigning a call to another closer: by hand (Aura Partner API: reassign closer) or by round
robin (``auto-reassign``). docs/api.md "Reassign".

The change writes its call event and its webhook event in its own transaction and only flushes;
the old calendar event's removal is handed to the transaction's ``CalendarChange``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk import models
from closerdesk.auth.service import AuthContext
from closerdesk.booking_links import service as booking_links
from closerdesk.booking_links.round_robin_counts import fairness_of
from closerdesk.calendars.drafts import event_draft
from closerdesk.calendars.unit_of_work import CalendarChange
from closerdesk.calls import repository
from closerdesk.calls.assignment import pick_by_round_robin
from closerdesk.calls.conflicts import flush_placement, require_free
from closerdesk.calls.schemas import (
    ChangeReasonCode,
    ReassignCloser,
    ReassignResult,
)
from closerdesk.calls.steps import (
    Closer,
    actor,
    closer_reasons,
    closer_with_calendar,
    is_pending,
    locked_call_with_lead,
    old_event,
    raise_first,
    record_fields_change,
    require_slot_call,
    require_valid,
    set_closer,
    snapshot,
)
from closerdesk.errors import (
    NoHostAvailable,
)
from closerdesk.kit import required
from closerdesk.kit.time import utcnow
from closerdesk.leads.service import lead_contact
from closerdesk.models import BookingLink, CalendarConnection
from closerdesk.webhooks.payloads import (
    CallCloserReassignedData,
)
from closerdesk.webhooks.service import record_event


# --- POST /v1/calls/{id}/reassign-closer ---------------------------------------------------------
async def reassign_closer(
    session: AsyncSession,
    auth: AuthContext,
    change: CalendarChange,
    call_id: str,
    body: ReassignCloser,
) -> ReassignResult:
    """Aura Partner API, reassign closer: move a booked upcoming call to another closer.
    A ``pending`` call stays pending: new closer, no event, no link (``new_event_id`` null).

    Checks in docs/api.md "Reassign" order: ``CallNotFound`` (404), ``CallNotReassignable``,
    ``CallCancelled``, ``CallInPast`` (409), ``CloserNotFound`` (404), ``SameCloser``,
    ``CalendarNotConnected``, ``CloserConflict`` (409); ``CalendarProviderError`` (502) when the
    new closer's calendar cannot answer or take the event (nothing changed then).

    Creates the new event and a new conferencing link and changes the call, its history and
    the ``call.closer_reassigned`` outbox row; the old event's removal is left to ``change``
    (after its commit; ``change.orphaned`` tells whether it is still there). ``body.reason_code``
    becomes the call's ``reason_code`` and goes into the history row and the webhook
    (docs/sales-floor.md, "Reason codes").
    """
    org = auth.organization_id
    call, lead, link = await locked_call_with_lead(session, auth, call_id)
    require_slot_call(call, utcnow())
    closer, connection, old_connection = await closer_with_calendar(
        session, org, body.new_closer_id, old_grant_id=call.calendar_grant_id
    )
    raise_first(
        closer_reasons(call.closer_id, closer.id, connection)
    )  # the conflicts are asked next
    chosen = require_valid(closer, connection, change.providers.secrets)
    start = required(call.scheduled_at, "scheduled_at")  # a booking call has both
    end = required(call.ends_at, "ends_at")
    await require_free(
        session,
        change,
        chosen.account,
        start,
        end,
        exclude_call_id=call.id,
        override_conflict=body.override_conflict,
    )
    return await _reassign_to(
        session,
        auth,
        change,
        call,
        lead,
        link,
        chosen,
        body.reason,
        "manual",
        old_connection,
        override_conflict=body.override_conflict,
        reason_code=body.reason_code,
    )


async def _reassign_to(
    session: AsyncSession,
    auth: AuthContext,
    change: CalendarChange,
    call: models.Call,
    lead: models.Lead,
    link: BookingLink | None,
    chosen: Closer,
    reason: str | None,
    assignment: str,
    old_connection: CalendarConnection | None = None,
    *,
    override_conflict: bool = False,
    reason_code: ChangeReasonCode | None = None,
) -> ReassignResult:
    """The effects of a reassign whose checks passed (Aura): new link, new event, the
    call changed with its history and outbox row, the old event handed to ``change``.
    ``lead`` and ``link`` are the call's (read with its lock); ``reason_code`` becomes the
    call's."""
    org = call.organization_id
    start = required(call.scheduled_at, "scheduled_at")
    minutes = required(call.duration_minutes, "duration_minutes")
    old = await old_event(session, change.providers.secrets, call, old_connection)
    previous_id, previous_name = call.closer_id, call.closer_name
    new_link = event_id = None
    if not is_pending(call):  # a pending call stays off calendars until confirmed
        # The new link first, so the new closer's event carries it (the old one is revoked below).
        new_link = await change.providers.conferencing(session).issue_link(org, call.id)
        draft = event_draft(
            call,
            lead,
            closer_name=chosen.member.name,
            booking_link_description=link.description if link else None,
            starts_at=start,
            minutes=minutes,
            link=new_link,
            sequence=call.sequence + 1,
        )
        event_id = await change.create(chosen.account, draft)
    fields = (*REASSIGN_FIELDS, "reason_code")
    before = snapshot(call, fields)
    call.reason_code = reason_code
    await change_closer(session, change, call, chosen, event_id, new_link, override_conflict)
    after = record_fields_change(
        session, call, auth, "closer_reassigned", before, reason=reason, reason_code=reason_code
    )
    result = await announce_reassign(
        session,
        auth,
        call,
        lead,
        event_id,
        (previous_id, previous_name),
        reason,
        after,
        assignment,
        reason_code=reason_code,
    )
    if old is not None:
        await change.remove(*old, call.id)
    return result


REASSIGN_FIELDS = (
    "closer_id",
    "closer_name",
    "closer_email",
    "calendar_event_id",
    "conferencing_link",
)


async def change_closer(
    session: AsyncSession,
    change: CalendarChange,
    call: models.Call,
    chosen: Closer,
    event_id: str | None,
    new_link: str | None,
    override_conflict: bool,
) -> None:
    """Swap closer, calendar event and conferencing link (the old link stops working); the
    closer and ``override_conflict`` are flushed together (``flush_placement``). A pending
    call has neither event nor link (``event_id``, ``new_link`` None)."""
    if call.conferencing_link is not None:
        await change.providers.conferencing(session).revoke_link(
            call.organization_id, call.conferencing_link
        )
    call.conferencing_link = new_link
    set_closer(call, chosen.member)
    call.calendar_event_id = event_id
    call.calendar_grant_id = None if event_id is None else chosen.account.connection_id
    call.override_conflict = override_conflict
    call.sequence += 1
    chosen.member.last_booked_at = utcnow()
    await flush_placement(session)


async def announce_reassign(
    session: AsyncSession,
    auth: AuthContext,
    call: models.Call,
    lead: models.Lead,
    event_id: str | None,
    previous: tuple[str | None, str | None],
    reason: str | None,
    call_after: dict[str, Any],
    assignment: str,
    *,
    reason_code: ChangeReasonCode | None = None,
) -> ReassignResult:
    """Aura reassign's result for a call whose closer just changed, and its
    ``call.closer_reassigned`` outbox row (``old_event_orphaned`` is settled after commit;
    ``reason_code`` as docs/sales-floor.md "Reason codes")."""
    result = ReassignResult(
        call_id=call.id,
        conferencing_link=call.conferencing_link,
        new_closer_id=required(call.closer_id, "closer_id"),
        new_closer_name=required(call.closer_name, "closer_name"),
        new_event_id=event_id,
        old_event_orphaned=False,
        previous_closer_id=previous[0],
        previous_closer_name=previous[1],
    )
    await record_event(
        session,
        call.organization_id,
        _reassigned_data(result, call, lead, auth, reason, call_after, assignment, reason_code),
    )
    return result


def _reassigned_data(
    result: ReassignResult,
    call: models.Call,
    lead: models.Lead,
    auth: AuthContext,
    reason: str | None,
    call_after: dict[str, Any],
    assignment: str = "manual",
    reason_code: ChangeReasonCode | None = None,
) -> CallCloserReassignedData:
    """``call.closer_reassigned`` data: all a partner needs to email the lead
    (docs/webhooks.md, ``call.closer_reassigned``)."""
    return CallCloserReassignedData.model_validate(
        {
            **result.model_dump(),
            "reason": reason,
            "reason_code": reason_code,
            "scheduled_at": call_after["scheduled_at"],
            "duration_minutes": call.duration_minutes,
            "time_zone": call.time_zone,
            "new_closer_email": call.closer_email,
            "lead": lead_contact(lead),
            "reassigned_by": actor(auth),
            "assignment": assignment,
            "call": call_after,
        }
    )


async def auto_reassign(
    session: AsyncSession,
    auth: AuthContext,
    change: CalendarChange,
    call_id: str,
    reason: str | None,
    *,
    reason_code: ChangeReasonCode | None = None,
) -> ReassignResult:
    """Give the call to another free host by round robin (docs/api.md, after Cal.com's
    "automatically reassign").

    Candidates: the hosts of the call's booking link (or, for a call without one, every active
    closer with a valid calendar), other than the current closer, free for the whole call
    (inside their availability; clear of busy time with the link's buffers; the chosen one's
    calendar asked live). Checks and effects are those of ``reassign_closer``; the webhook
    says ``assignment: "round_robin"``. Raises ``CallNotFound`` (404),
    ``CallNotReassignable``, ``CallCancelled``, ``CallInPast``, ``NoHostAvailable`` (409),
    ``CalendarProviderError`` (502). ``reason_code`` as in ``reassign_closer``.
    """
    org = auth.organization_id
    now = utcnow()
    call, lead, link = await locked_call_with_lead(session, auth, call_id)
    require_slot_call(call, now)
    start = required(call.scheduled_at, "scheduled_at")
    end = required(call.ends_at, "ends_at")
    hosts = await booking_links.round_robin_hosts(session, org, link, exclude=call.closer_id)
    # Lock every candidate first (id order), then decide on what the lock protects.
    await repository.lock_members(session, org, [h.member.id for h in hosts])
    buffers = booking_links.Buffers.of(link)
    free = await booking_links.free_hosts_for_span(session, org, hosts, start, end, buffers)
    by_id = {h.member.id: h for h in hosts}
    chosen = await pick_by_round_robin(
        session,
        change,
        org,
        link.id if link else None,
        by_id,
        free,
        buffers.around(start, end),
        now,
        fairness_period=fairness_of(link),
        scheduled_at=start,
    )
    if chosen is None:
        raise NoHostAvailable()
    return await _reassign_to(
        session,
        auth,
        change,
        call,
        lead,
        link,
        chosen,
        reason,
        "round_robin",
        reason_code=reason_code,
    )

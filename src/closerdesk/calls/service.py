"""The rules of calls: booking, outcome, reassign, reschedule, cancel, update (docs/api.md).

Every state change writes its call event and its webhook event in the transaction of the
change, and only flushes: the caller commits. The operations that touch a calendar take the
``CalendarChange`` of that transaction (``calendars/unit_of_work.py``), which creates, moves
and removes events, undoes them if the change does not commit, and commits once.

Concurrency: the closer's row is locked (PostgreSQL ``FOR NO KEY UPDATE``; SQLite write
transactions begin ``IMMEDIATE``) before the conflict check, so two requests can never both
place one closer into overlapping time without ``override_conflict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk import models
from closerdesk.auth.service import AuthContext
from closerdesk.booking_links import service as booking_links
from closerdesk.booking_links.service import CLOSER_ROLES
from closerdesk.calendars import repository as calendars_repository
from closerdesk.calendars.accounts import account_of
from closerdesk.calendars.drafts import event_draft
from closerdesk.calendars.provider import CalendarAccount
from closerdesk.calendars.unit_of_work import CalendarChange, in_transaction
from closerdesk.calls import repository
from closerdesk.calls.conflicts import flush_placement, require_free
from closerdesk.calls.schemas import (
    Call,
    CallCreate,
    CallUpdate,
    ConflictItem,
    OutcomeSet,
    ReassignCloser,
    ReassignResult,
    Reschedule,
)
from closerdesk.errors import (
    BookingLinkInactive,
    CalendarNotConnected,
    CalendarProviderError,
    CallCancelled,
    CallInPast,
    CallLeadMismatch,
    CallNotFound,
    CallNotReassignable,
    CallNotStarted,
    CloserNotFound,
    NoHostAvailable,
    PaymentAlreadyLinked,
    PaymentNotFound,
    ProductInactive,
    SameCloser,
    SetterNotFound,
    SlotInPast,
    SlotNotAvailable,
)
from closerdesk.kit import required
from closerdesk.kit.ids import new_id
from closerdesk.kit.secrets import SecretBox
from closerdesk.kit.time import utcnow
from closerdesk.leads.service import find_or_create, get_lead, lead_contact, lead_json
from closerdesk.models import BookingLink, CalendarConnection, CallEvent, TeamMember
from closerdesk.products.service import get_product
from closerdesk.scheduling.intervals import Interval
from closerdesk.webhooks.payloads import (
    CallBookedData,
    CallCancelledData,
    CallCloserReassignedData,
    CallNoShowData,
    CallOutcomeSetData,
    CallRescheduledData,
    CallUpdatedData,
    LeadCreatedData,
    LeadUpdatedData,
)
from closerdesk.webhooks.service import record_event

SETTER_ROLES = frozenset({"setter", "admin", "closer"})


# --- reading -------------------------------------------------------------------------------------
async def get_call(session: AsyncSession, auth: AuthContext, call_id: str) -> models.Call:
    """Raises ``CallNotFound`` (404) when missing or of another organization."""
    call = await repository.get_call(session, auth.organization_id, call_id)
    if call is None:
        raise CallNotFound()
    return call


async def call_with_lead(
    session: AsyncSession, auth: AuthContext, call_id: str
) -> tuple[models.Call, models.Lead]:
    """The call and its lead. Raises ``CallNotFound`` (404)."""
    call = await get_call(session, auth, call_id)
    return call, await get_lead(session, call.organization_id, call.lead_id)


def call_json(call: models.Call) -> dict[str, Any]:
    """The call object as it goes on the wire (and into webhook payloads)."""
    return Call.model_validate(call).model_dump(mode="json")


# --- shared steps --------------------------------------------------------------------------------
def _actor(auth: AuthContext) -> dict[str, str]:
    return {"type": "api_key", "id": auth.api_key_id}


def _record_change(
    session: AsyncSession,
    call: models.Call,
    auth: AuthContext,
    kind: str,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str | None = None,
) -> None:
    session.add(
        CallEvent(
            id=new_id("cev"),
            organization_id=call.organization_id,
            call_id=call.id,
            type=kind,
            actor_type="api_key",
            actor_id=auth.api_key_id,
            reason=reason,
            before=before,
            after=after,
        )
    )


def _snapshot(call: models.Call, fields: Sequence[str]) -> dict[str, Any]:
    """The JSON values of ``fields`` of the call, for history rows."""
    full = call_json(call)
    return {name: full[name] for name in fields}


async def _locked_call(session: AsyncSession, auth: AuthContext, call_id: str) -> models.Call:
    call = await repository.get_call(session, auth.organization_id, call_id, lock=True)
    if call is None:
        raise CallNotFound()
    return call


async def _locked_call_with_lead(
    session: AsyncSession, auth: AuthContext, call_id: str
) -> tuple[models.Call, models.Lead, BookingLink | None]:
    """The call (row-locked), its lead and booking link, read in one query.
    Raises ``CallNotFound`` (404)."""
    found = await repository.locked_call_with_lead(session, auth.organization_id, call_id)
    if found is None:
        raise CallNotFound()
    return found


def _require_slot_call(call: models.Call, now: datetime) -> None:
    """Aura's reassign constraints, in the order of docs/api.md "Reassign" (after 404)."""
    if call.call_kind == "intent":
        raise CallNotReassignable()
    if call.status == "cancelled":
        raise CallCancelled()
    if call.scheduled_at is None or call.scheduled_at <= now:
        raise CallInPast()


@dataclass(frozen=True)
class _Closer:
    """A closer able to take the call: the row (locked) and its calendar as the provider
    sees it."""

    member: TeamMember
    account: CalendarAccount


async def _closer_with_calendar(
    session: AsyncSession, organization_id: str, closer_id: str, *, old_grant_id: str | None = None
) -> tuple[TeamMember, CalendarConnection | None, CalendarConnection | None]:
    """The closer, row-locked for the rest of the transaction, its connection (or None), and
    the connection ``old_grant_id`` names (the calendar of the call's current event), read
    together in one query.

    Raises ``CloserNotFound`` (404) for a missing, inactive, cross-organization or non-closer id.
    """
    found = await repository.locked_member_with_connections(
        session, organization_id, closer_id, connection_id=old_grant_id
    )
    if found is None:
        raise CloserNotFound()
    closer, connections = found
    if not closer.is_active or closer.role not in CLOSER_ROLES:
        raise CloserNotFound()
    mine = next((c for c in connections if c.member_id == closer.id), None)
    old = next((c for c in connections if c.id == old_grant_id), None)
    return closer, mine, old


def _require_valid(
    closer: TeamMember, connection: CalendarConnection | None, box: SecretBox
) -> _Closer:
    if connection is None or connection.status != "valid":
        raise CalendarNotConnected()
    return _Closer(closer, account_of(connection, box))


async def _old_event(
    session: AsyncSession,
    box: SecretBox,
    call: models.Call,
    known: CalendarConnection | None = None,
) -> tuple[CalendarAccount, str] | None:
    """The call's current calendar event and the calendar holding it (None: no event, or its
    calendar was disconnected, and the built-in events went with it)."""
    if call.calendar_event_id is None or call.calendar_grant_id is None:
        return None
    connection = known
    if connection is None or connection.id != call.calendar_grant_id:
        connection = await calendars_repository.get_connection_by_id(
            session, call.organization_id, call.calendar_grant_id
        )
    if connection is None:
        return None
    return account_of(connection, box), call.calendar_event_id


def _set_closer(call: models.Call, closer: TeamMember) -> None:
    call.closer_id, call.closer_name, call.closer_email = closer.id, closer.name, closer.email


# --- POST /v1/calls ------------------------------------------------------------------------------
async def book(
    session: AsyncSession, auth: AuthContext, change: CalendarChange, body: CallCreate
) -> models.Call:
    """Book a call (docs/api.md). Fires ``call.booked`` (and ``lead.created`` for a new lead).

    Raises ``LeadNotFound``, ``SetterNotFound``, ``ProductNotFound``, ``BookingLinkNotFound``
    (404), ``ProductInactive``, ``BookingLinkInactive`` (409), ``SlotInPast`` (400) and, for
    bookings, ``CloserNotFound`` (404), ``CalendarNotConnected``/``CloserConflict`` (409),
    ``SlotNotAvailable`` (409, round robin), ``CalendarProviderError`` (502).
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
    await _check_setter(session, org, body.setter_id)
    await _check_product(session, org, body.product_id, require_active=True)

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
    if body.call_kind == "booking":
        # The schema demands a time, and a closer or a booking link (whose duration applies).
        start = required(body.scheduled_at, "scheduled_at")
        minutes = body.duration_minutes or required(link, "booking link").duration_minutes
        end = start + timedelta(minutes=minutes)
        if start <= now:
            raise SlotInPast()
        if body.closer_id is None:
            chosen = await _round_robin_closer(
                session, change, required(link, "booking link"), start, end, now
            )
            assignment = "round_robin"
        else:
            closer, connection, _ = await _closer_with_calendar(session, org, body.closer_id)
            chosen = _require_valid(closer, connection, change.providers.secrets)
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
        _set_closer(call, chosen.member)
        conferencing = change.providers.conferencing(session)
        call.conferencing_link = await conferencing.issue_link(org, call.id)
        draft = event_draft(
            call,
            lead,
            closer_name=chosen.member.name,
            booking_link_description=link.description if link else None,
            starts_at=start,
            minutes=minutes,
        )
        event_id = await change.create(chosen.account, draft)
        call.calendar_event_id, call.calendar_grant_id = event_id, chosen.account.connection_id
        chosen.member.last_booked_at = now
    elif body.closer_id is not None:
        intent_closer = await repository.get_member(session, org, body.closer_id)
        if (
            intent_closer is None
            or not intent_closer.is_active
            or intent_closer.role not in CLOSER_ROLES
        ):
            raise CloserNotFound()
        _set_closer(call, intent_closer)

    session.add(call)
    await flush_placement(session)
    after = call_json(call)
    _record_change(session, call, auth, "booked", before={}, after=after)
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
            call=after, lead=lead_contact(lead), booked_by=_actor(auth), assignment=assignment
        ),
    )
    return call


async def _check_setter(session: AsyncSession, organization_id: str, setter_id: str | None) -> None:
    if setter_id is None:
        return
    setter = await repository.get_member(session, organization_id, setter_id)
    if setter is None or not setter.is_active or setter.role not in SETTER_ROLES:
        raise SetterNotFound()


async def _check_product(
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


async def _round_robin_closer(
    session: AsyncSession,
    change: CalendarChange,
    link: BookingLink,
    start: datetime,
    end: datetime,
    now: datetime,
) -> _Closer:
    """The host that gets a call at ``start`` by the link's round robin (docs/api.md "Round robin").

    ``start`` must be an offered slot. The hosts offered there are row-locked in id order (no
    deadlock between two bookings), checked again under the lock for the whole call
    ``[start, end)`` (availability, busy time, buffers: the slot may have been taken since it
    was offered), and the first of them in round-robin order whose calendar confirms the time
    live gets the call. Raises ``SlotNotAvailable`` (409), ``CalendarProviderError`` (502).
    """
    offered = await booking_links.free_hosts_for_slot(session, link, start, now)
    if not offered:
        raise SlotNotAvailable()
    await repository.lock_members(session, link.organization_id, offered)
    hosts = {
        h.member.id: h
        for h in await booking_links.bookable_hosts(session, link)
        if h.member.id in offered
    }
    free = await booking_links.free_hosts_for_span(
        session,
        link.organization_id,
        list(hosts.values()),
        start,
        end,
        buffer_before_minutes=link.buffer_before_minutes,
        buffer_after_minutes=link.buffer_after_minutes,
    )
    span = Interval(
        start - timedelta(minutes=link.buffer_before_minutes),
        end + timedelta(minutes=link.buffer_after_minutes),
    )
    chosen = await _pick_by_round_robin(
        session, change, link.organization_id, link.id, hosts, free, span, now
    )
    if chosen is None:
        raise SlotNotAvailable()
    return chosen


async def _pick_by_round_robin(
    session: AsyncSession,
    change: CalendarChange,
    organization_id: str,
    link_id: str | None,
    hosts: dict[str, booking_links.Host],
    free: Sequence[str],
    span: Interval,
    now: datetime,
) -> _Closer | None:
    """The first of the ``free`` hosts, in round-robin order, whose calendar is free during
    ``span`` when asked live (the mirror that made them free may be a few minutes old).

    A calendar that refuses the credentials drops its host (the connection turns invalid), and
    so does one that cannot answer: the next host is asked. When no host is confirmed and some
    calendar could not answer, raises that ``CalendarProviderError`` (502): the time may well
    be free, closerdesk just cannot tell.
    """
    candidates = list(free)
    weights = {m: (h.priority, h.weight) for m, h in hosts.items()}
    unanswered: CalendarProviderError | None = None
    while candidates:
        chosen_id = await booking_links.round_robin_choice(
            session, organization_id, link_id, candidates, weights, now
        )
        if chosen_id is None:
            break
        host = hosts[chosen_id]
        account = account_of(host.connection, change.providers.secrets)
        if in_transaction(change.calendar(account)):  # its busy time was read under the lock
            return _Closer(host.member, account)
        try:
            busy = await change.busy(account, span.start, span.end)
        except CalendarNotConnected:
            busy = [span]
        except CalendarProviderError as exc:
            unanswered, busy = exc, [span]
        if not any(b.overlaps(span) for b in busy):
            return _Closer(host.member, account)
        candidates.remove(chosen_id)
    if unanswered is not None:
        raise unanswered
    return None


# --- POST /v1/calls/{id}/outcome -----------------------------------------------------------------
async def set_outcome(
    session: AsyncSession, auth: AuthContext, call_id: str, body: OutcomeSet
) -> models.Call:
    """Aura: set call outcome. Fires ``call.outcome_set`` (and ``call.no_show`` for ``no_show``).

    Raises ``CallNotFound`` (404), ``CallCancelled`` and ``CallNotStarted`` (409). An outcome
    may be corrected later; the history keeps every value.
    """
    call = await _locked_call(session, auth, call_id)
    if call.status == "cancelled":
        raise CallCancelled()
    if call.scheduled_at is not None and call.scheduled_at > utcnow():
        raise CallNotStarted()
    fields = ["status", "notes"]
    before = _snapshot(call, fields)
    call.status = body.status
    if body.notes is not None:
        call.notes = body.notes
    await session.flush()
    after = call_json(call)
    _record_change(
        session, call, auth, "outcome_set", before=before, after={k: after[k] for k in fields}
    )
    lead = await get_lead(session, call.organization_id, call.lead_id)
    data = CallOutcomeSetData(
        call=after,
        lead=lead_contact(lead),
        previous_status=before["status"],
        set_by=_actor(auth),
    )
    await record_event(session, call.organization_id, data)
    if body.status == "no_show":
        no_show = CallNoShowData.model_validate(data.model_dump())
        await record_event(session, call.organization_id, no_show)
    return call


# --- POST /v1/calls/{id}/reassign-closer ---------------------------------------------------------
async def reassign_closer(
    session: AsyncSession,
    auth: AuthContext,
    change: CalendarChange,
    call_id: str,
    body: ReassignCloser,
) -> ReassignResult:
    """Aura Partner API, reassign closer: move a booked upcoming call to another closer.

    Checks in docs/api.md "Reassign" order: ``CallNotFound`` (404), ``CallNotReassignable``,
    ``CallCancelled``, ``CallInPast`` (409), ``CloserNotFound`` (404), ``SameCloser``,
    ``CalendarNotConnected``, ``CloserConflict`` (409); ``CalendarProviderError`` (502) when the
    new closer's calendar cannot answer or take the event (nothing changed then).

    Creates the new event and a new conferencing link and changes the call, its history and
    the ``call.closer_reassigned`` outbox row; the old event's removal is left to ``change``
    (after its commit; ``change.orphaned`` tells whether it is still there).
    """
    org = auth.organization_id
    call, lead, link = await _locked_call_with_lead(session, auth, call_id)
    _require_slot_call(call, utcnow())
    closer, connection, old_connection = await _closer_with_calendar(
        session, org, body.new_closer_id, old_grant_id=call.calendar_grant_id
    )
    if call.closer_id == closer.id:
        raise SameCloser()
    chosen = _require_valid(closer, connection, change.providers.secrets)
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
    )


async def _reassign_to(
    session: AsyncSession,
    auth: AuthContext,
    change: CalendarChange,
    call: models.Call,
    lead: models.Lead,
    link: BookingLink | None,
    chosen: _Closer,
    reason: str | None,
    assignment: str,
    old_connection: CalendarConnection | None = None,
    *,
    override_conflict: bool = False,
) -> ReassignResult:
    """The effects of a reassign whose checks passed (Aura): new link, new event, the
    call changed with its history and outbox row, the old event handed to ``change``.
    ``lead`` and ``link`` are the call's (read with its lock)."""
    org = call.organization_id
    start = required(call.scheduled_at, "scheduled_at")
    minutes = required(call.duration_minutes, "duration_minutes")
    old = await _old_event(session, change.providers.secrets, call, old_connection)
    previous_id, previous_name = call.closer_id, call.closer_name
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
    before = _snapshot(call, _REASSIGN_FIELDS)
    await _change_closer(session, change, call, chosen, event_id, new_link, override_conflict)
    after = call_json(call)
    _record_change(
        session,
        call,
        auth,
        "closer_reassigned",
        before=before,
        after={k: after[k] for k in _REASSIGN_FIELDS},
        reason=reason,
    )
    result = await _announce_reassign(
        session, auth, call, lead, event_id, (previous_id, previous_name), reason, after, assignment
    )
    if old is not None:
        await change.remove(*old, call.id)
    return result


_REASSIGN_FIELDS = (
    "closer_id",
    "closer_name",
    "closer_email",
    "calendar_event_id",
    "conferencing_link",
)


async def _change_closer(
    session: AsyncSession,
    change: CalendarChange,
    call: models.Call,
    chosen: _Closer,
    event_id: str,
    new_link: str,
    override_conflict: bool,
) -> None:
    """Swap closer, calendar event and conferencing link (the old link stops working); the
    closer and ``override_conflict`` are flushed together (``flush_placement``)."""
    if call.conferencing_link is not None:
        await change.providers.conferencing(session).revoke_link(
            call.organization_id, call.conferencing_link
        )
    call.conferencing_link = new_link
    _set_closer(call, chosen.member)
    call.calendar_event_id, call.calendar_grant_id = event_id, chosen.account.connection_id
    call.override_conflict = override_conflict
    call.sequence += 1
    chosen.member.last_booked_at = utcnow()
    await flush_placement(session)


async def _announce_reassign(
    session: AsyncSession,
    auth: AuthContext,
    call: models.Call,
    lead: models.Lead,
    event_id: str,
    previous: tuple[str | None, str | None],
    reason: str | None,
    call_after: dict[str, Any],
    assignment: str,
) -> ReassignResult:
    """Aura reassign's result for a call whose closer just changed, and its
    ``call.closer_reassigned`` outbox row (``old_event_orphaned`` is settled after commit)."""
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
        _reassigned_data(result, call, lead, auth, reason, call_after, assignment),
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
) -> CallCloserReassignedData:
    """``call.closer_reassigned`` data: all a partner needs to email the lead
    (docs/webhooks.md, ``call.closer_reassigned``)."""
    return CallCloserReassignedData.model_validate(
        {
            **result.model_dump(),
            "reason": reason,
            "scheduled_at": call_after["scheduled_at"],
            "duration_minutes": call.duration_minutes,
            "time_zone": call.time_zone,
            "new_closer_email": call.closer_email,
            "lead": lead_contact(lead),
            "reassigned_by": _actor(auth),
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
) -> ReassignResult:
    """Give the call to another free host by round robin (docs/api.md, after Cal.com's
    "automatically reassign").

    Candidates: the hosts of the call's booking link (or, for a call without one, every active
    closer with a valid calendar), other than the current closer, free for the whole call
    (inside their availability; clear of busy time with the link's buffers; the chosen one's
    calendar asked live). Checks and effects are those of ``reassign_closer``; the webhook
    says ``assignment: "round_robin"``. Raises ``CallNotFound`` (404),
    ``CallNotReassignable``, ``CallCancelled``, ``CallInPast``, ``NoHostAvailable`` (409),
    ``CalendarProviderError`` (502).
    """
    org = auth.organization_id
    now = utcnow()
    call, lead, link = await _locked_call_with_lead(session, auth, call_id)
    _require_slot_call(call, now)
    start = required(call.scheduled_at, "scheduled_at")
    end = required(call.ends_at, "ends_at")
    if link is not None:
        hosts = await booking_links.bookable_hosts(session, link, exclude=call.closer_id)
    else:
        ready = await booking_links.closers_with_calendars(session, org)
        hosts = [
            booking_links.Host(member, connection, "medium", 100, None)
            for member_id, (member, connection) in ready.items()
            if member_id != call.closer_id
        ]
    # Lock every candidate first (id order), then decide on what the lock protects.
    await repository.lock_members(session, org, [h.member.id for h in hosts])
    before_minutes = link.buffer_before_minutes if link else 0
    after_minutes = link.buffer_after_minutes if link else 0
    free = await booking_links.free_hosts_for_span(
        session,
        org,
        hosts,
        start,
        end,
        buffer_before_minutes=before_minutes,
        buffer_after_minutes=after_minutes,
    )
    span = Interval(
        start - timedelta(minutes=before_minutes), end + timedelta(minutes=after_minutes)
    )
    by_id = {h.member.id: h for h in hosts}
    chosen = await _pick_by_round_robin(
        session, change, org, link.id if link else None, by_id, free, span, now
    )
    if chosen is None:
        raise NoHostAvailable()
    return await _reassign_to(
        session, auth, change, call, lead, link, chosen, reason, "round_robin"
    )


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
    """
    org = auth.organization_id
    now = utcnow()
    call, lead, link = await _locked_call_with_lead(session, auth, call_id)
    _require_slot_call(call, now)
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
    closer, connection, old_connection = await _closer_with_calendar(
        session, org, closer_id, old_grant_id=call.calendar_grant_id
    )
    chosen = _require_valid(closer, connection, change.providers.secrets)
    conflicts = await require_free(
        session,
        change,
        chosen.account,
        start,
        end,
        exclude_call_id=call.id,
        override_conflict=body.override_conflict,
    )

    fields = ["scheduled_at", "duration_minutes", "time_zone", "notes", *_REASSIGN_FIELDS]
    before = _snapshot(call, fields)
    previous_id, previous_name = call.closer_id, call.closer_name
    # A new event when the closer changes, or when the call's event is not on the closer's
    # current calendar (it was disconnected and connected again); else the event moves.
    needs_new_event = (
        changing_closer
        or call.calendar_event_id is None
        or call.calendar_grant_id != chosen.account.connection_id
    )
    conferencing = change.providers.conferencing(session)
    new_link = await conferencing.issue_link(org, call.id) if changing_closer else None
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
    old = await _old_event(session, box, call, old_connection) if needs_new_event else None
    if needs_new_event:
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
        if changing_closer:
            await _change_closer(
                session,
                change,
                call,
                chosen,
                event_id,
                required(new_link, "conferencing link"),
                body.override_conflict,
            )
        else:
            call.calendar_event_id, call.calendar_grant_id = event_id, chosen.account.connection_id
            call.override_conflict = body.override_conflict
            call.sequence += 1
            await flush_placement(session)
    after = call_json(call)
    _record_change(
        session,
        call,
        auth,
        "rescheduled",
        before=before,
        after={k: after[k] for k in fields},
        reason=body.reason,
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
            rescheduled_by=_actor(auth),
            is_slot_free=not conflicts,
        ),
    )
    if changing_closer:
        await _announce_reassign(
            session,
            auth,
            call,
            lead,
            event_id,
            (previous_id, previous_name),
            body.reason,
            after,
            "manual",
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
) -> models.Call:
    """Cancel an upcoming call: the link is revoked and the calendar event handed to
    ``change`` for removal.

    Raises ``CallNotFound`` (404), ``CallCancelled`` and ``CallInPast`` (409).
    Fires ``call.cancelled``.
    """
    call = await _locked_call(session, auth, call_id)
    if call.status == "cancelled":
        raise CallCancelled()
    if call.scheduled_at is not None and call.scheduled_at <= utcnow():
        raise CallInPast()
    before = _snapshot(call, ["status", "cancelled_at", "cancel_reason"])
    call.status, call.cancelled_at, call.cancel_reason = "cancelled", utcnow(), reason
    call.sequence += 1
    if call.conferencing_link is not None:
        await change.providers.conferencing(session).revoke_link(
            call.organization_id, call.conferencing_link
        )
    await session.flush()
    after = call_json(call)
    _record_change(
        session,
        call,
        auth,
        "cancelled",
        before=before,
        after={k: after[k] for k in before},
        reason=reason,
    )
    lead = await get_lead(session, call.organization_id, call.lead_id)
    await record_event(
        session,
        call.organization_id,
        CallCancelledData(
            call=after, lead=lead_contact(lead), reason=reason, cancelled_by=_actor(auth)
        ),
    )
    old = await _old_event(session, change.providers.secrets, call)
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
    call = await _locked_call(session, auth, call_id)
    changes = body.model_dump(mode="python", exclude_unset=True)
    if not changes:
        return call
    if "action_items" in changes and changes["action_items"] is None:
        changes["action_items"] = []  # a list on the wire (Aura: get call): null clears it to empty
    org = call.organization_id
    if changes.get("product_id") is not None:
        await _check_product(session, org, changes["product_id"], require_active=False)
    if changes.get("setter_id") is not None:
        await _check_setter(session, org, changes["setter_id"])
    if changes.get("linked_payment_id") is not None:
        await _link_payment(session, call, changes["linked_payment_id"])
    if "linked_payment_id" in changes:
        await unlink_previous_payment(session, call, changes["linked_payment_id"])
    if changes.get("guest_rsvp_status") is not None:
        changes["guest_rsvp_confirmed_at"] = utcnow()
    fields = sorted(changes)
    before = _snapshot(call, fields)
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
    _record_change(session, call, auth, "updated", before=before, after=after)
    await record_event(
        session,
        call.organization_id,
        CallUpdatedData(
            call=call_json(call),
            changed_fields=sorted(after),
            previous=before,
            updated_by=_actor(auth),
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

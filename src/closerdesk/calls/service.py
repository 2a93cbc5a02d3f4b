"""The rules of calls: booking, outcome, reassign, reschedule, cancel, update (SPEC §3).

Every state change writes its call event and its webhook event in the transaction of the change.
Calendar events live outside that transaction for real providers, so the operations that touch
them commit at a known point:

* an event created (or moved) *before* the commit is undone if the transaction fails;
* an event cancelled *after* the commit that failed to cancel becomes a persisted clean-up row
  (``calendar_cleanups``), retried until it goes (SPEC §3, ``old_event_orphaned``).

Concurrency: the closer's row is locked (PostgreSQL ``FOR NO KEY UPDATE``; SQLite write
transactions begin ``IMMEDIATE``) before the conflict check, so two requests can never both
place one closer into overlapping time without ``override_conflict``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk import models
from closerdesk.auth.service import AuthContext
from closerdesk.booking_links import service as booking_links
from closerdesk.booking_links.service import CLOSER_ROLES
from closerdesk.calendars.provider import CalendarError, EventDraft
from closerdesk.calls import repository
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
    CloserConflict,
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
from closerdesk.kit.time import utcnow
from closerdesk.leads.service import find_or_create, get_lead, lead_contact, lead_json
from closerdesk.models import (
    BookingLink,
    CalendarCleanup,
    CalendarConnection,
    CallEvent,
    TeamMember,
)
from closerdesk.products.service import get_product
from closerdesk.providers import Providers
from closerdesk.scheduling.intervals import Interval
from closerdesk.webhooks.service import EventType, record_event

log = structlog.get_logger(__name__)

SETTER_ROLES = frozenset({"setter", "admin", "closer"})
CLEANUP_RETRY_AFTER = timedelta(minutes=1)


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


def _require_slot_call(call: models.Call, now: datetime) -> None:
    """Seed 000 constraints, in the order of SPEC §3's table (after 404)."""
    if call.call_kind == "intent":
        raise CallNotReassignable()
    if call.status == "cancelled":
        raise CallCancelled()
    if call.scheduled_at is None or call.scheduled_at <= now:
        raise CallInPast()


async def _closer_with_calendar(
    session: AsyncSession, organization_id: str, closer_id: str
) -> tuple[TeamMember, CalendarConnection | None]:
    """The closer, row-locked for the rest of the transaction, and its connection (or None).

    Raises ``CloserNotFound`` (404) for a missing, inactive, cross-organization or non-closer id.
    """
    closer = await repository.get_member(session, organization_id, closer_id, lock=True)
    if closer is None or not closer.is_active or closer.role not in CLOSER_ROLES:
        raise CloserNotFound()
    connection = await repository.get_connection(session, organization_id, closer_id)
    return closer, connection


def _require_valid(connection: CalendarConnection | None) -> CalendarConnection:
    if connection is None or connection.status != "valid":
        raise CalendarNotConnected()
    return connection


async def find_conflicts(
    session: AsyncSession,
    providers: Providers,
    connection: CalendarConnection,
    start: datetime,
    end: datetime,
    *,
    exclude_call_id: str | None,
    tolerate_calendar_error: bool = False,
) -> list[ConflictItem]:
    """What the closer already has in ``[start, end)``: other active calls, then calendar busy.

    Raises ``CalendarProviderError`` (502) if the calendar cannot answer, unless
    ``tolerate_calendar_error`` (an override does not need the answer to proceed).
    """
    wanted = Interval(start, end)
    conflicts = [
        ConflictItem(start=c.scheduled_at, end=c.ends_at, source="call", call_id=c.id)
        for c in await repository.overlapping_calls(
            session,
            connection.organization_id,
            connection.member_id,
            start,
            end,
            exclude_call_id=exclude_call_id,
        )
        if c.scheduled_at is not None and c.ends_at is not None
    ]
    try:
        busy = await providers.calendars(session, connection.provider).busy(connection, start, end)
    except CalendarError as exc:
        if tolerate_calendar_error:
            log.warning("calendar.busy_failed", connection_id=connection.id, error=str(exc))
            return conflicts
        raise CalendarProviderError(f"The calendar did not answer: {exc}") from exc
    conflicts += [
        ConflictItem(start=b.start, end=b.end, source="calendar")
        for b in sorted(busy)
        if b.overlaps(wanted)
    ]
    return conflicts


async def _require_free(
    session: AsyncSession,
    providers: Providers,
    connection: CalendarConnection,
    start: datetime,
    end: datetime,
    exclude_call_id: str | None,
    override_conflict: bool,
) -> list[ConflictItem]:
    """The conflicts of ``[start, end)`` for the (locked) closer; raises ``CloserConflict``
    (409, with ``details.conflicts``) unless ``override_conflict``, which returns them."""
    conflicts = await find_conflicts(
        session,
        providers,
        connection,
        start,
        end,
        exclude_call_id=exclude_call_id,
        tolerate_calendar_error=override_conflict,
    )
    if conflicts and not override_conflict:
        raise _conflict_error(conflicts)
    return conflicts


def _conflict_error(conflicts: list[ConflictItem]) -> CloserConflict:
    return CloserConflict(
        details={"conflicts": [c.model_dump(mode="json", exclude_none=True) for c in conflicts]}
    )


def _draft(
    call: models.Call,
    lead: models.Lead,
    start: datetime,
    minutes: int,
    *,
    link: str | None = None,
) -> EventDraft:
    """The calendar event of the call; ``link`` (default: the call's) is where it meets."""
    who = lead.full_name or lead.email
    return EventDraft(
        call_id=call.id,
        title=f"Call with {who}",
        starts_at=start,
        ends_at=start + timedelta(minutes=minutes),
        description=f"closerdesk call {call.id}",
        location=(link or call.conferencing_link) or "",
        attendees=(lead.email,),
    )


async def _create_event(
    session: AsyncSession,
    providers: Providers,
    connection: CalendarConnection,
    draft: EventDraft,
) -> str:
    try:
        return await providers.calendars(session, connection.provider).create_event(
            connection, draft
        )
    except CalendarError as exc:
        raise CalendarProviderError(f"Creating the calendar event failed: {exc}") from exc


@dataclass(frozen=True)
class _EventRef:
    """A calendar event by plain values, safe to use after a rollback expired the ORM rows."""

    organization_id: str
    connection_id: str
    provider: str
    event_id: str
    call_id: str | None


async def _commit_or_undo(
    session: AsyncSession, undo: Callable[[], Awaitable[None]] | None
) -> None:
    """Commit; if the commit (or anything before it) fails, roll back and run ``undo``."""
    try:
        await session.commit()
    except BaseException:
        await session.rollback()
        if undo is not None:
            await undo()
        raise


async def _cancel_event_or_queue(
    session: AsyncSession, providers: Providers, ref: _EventRef
) -> bool:
    """Cancel an event in a transaction of its own; on failure persist a clean-up row.

    Returns True when the event is now orphaned (a clean-up row keeps trying to remove it).
    """
    connection = await repository.get_connection_by_id(
        session, ref.organization_id, ref.connection_id
    )
    if connection is None:  # disconnected: the built-in calendar's events went with it
        return False
    ref = replace(ref, provider=connection.provider)
    cancelled = False
    try:
        # A savepoint, not a session rollback: a full rollback would expire every ORM row the
        # caller has just committed and still answers with (the cancelled call, for one).
        async with session.begin_nested():
            await providers.calendars(session, connection.provider).cancel_event(
                connection, ref.event_id
            )
        cancelled = True
        await session.commit()
        return False
    except Exception as exc:
        if cancelled:  # the commit failed, not the provider: start from a clean transaction
            await session.rollback()
        log.warning("calendar.cancel_failed", event_id=ref.event_id, error=str(exc))
        await _queue_cleanup(session, ref, str(exc))
        return True


async def _queue_cleanup(session: AsyncSession, ref: _EventRef, error: str) -> None:
    session.add(
        CalendarCleanup(
            id=new_id("clean"),
            organization_id=ref.organization_id,
            connection_id=ref.connection_id,
            provider=ref.provider,
            event_id=ref.event_id,
            call_id=ref.call_id,
            last_error=error[:2000],
            next_attempt_at=utcnow() + CLEANUP_RETRY_AFTER,
        )
    )
    await session.commit()


async def _promise_cleanup(session: AsyncSession, ref: _EventRef) -> str | None:
    """In the change's own transaction: a clean-up row for the old event, due a little later.

    Written before the commit, so a crash between the commit and the cancel still leaves a
    row that the dispatcher retries (STYLE habit 3); ``_keep_promise`` settles it right after
    the commit. None when the calendar is gone (its built-in events went with it).
    """
    connection = await repository.get_connection_by_id(
        session, ref.organization_id, ref.connection_id
    )
    if connection is None:
        return None
    cleanup_id = new_id("clean")
    session.add(
        CalendarCleanup(
            id=cleanup_id,
            organization_id=ref.organization_id,
            connection_id=ref.connection_id,
            provider=connection.provider,
            event_id=ref.event_id,
            call_id=ref.call_id,
            attempts=0,
            next_attempt_at=utcnow() + CLEANUP_RETRY_AFTER,
        )
    )
    return cleanup_id


async def _keep_promise(
    session: AsyncSession, providers: Providers, ref: _EventRef, cleanup_id: str | None
) -> bool:
    """After the commit: cancel the old event now and resolve its clean-up row, or record
    why not (the row stays due). Returns True when the event is left orphaned."""
    if cleanup_id is None:
        return False
    cleanup = await session.get(CalendarCleanup, cleanup_id)
    connection = await repository.get_connection_by_id(
        session, ref.organization_id, ref.connection_id
    )
    if cleanup is None or connection is None:
        return False
    try:
        # A savepoint, not a session rollback: a full rollback would expire every ORM row the
        # caller has just committed and still answers with (the cancelled call, for one).
        async with session.begin_nested():
            await providers.calendars(session, connection.provider).cancel_event(
                connection, ref.event_id
            )
    except Exception as exc:
        log.warning("calendar.cancel_failed", event_id=ref.event_id, error=str(exc))
        cleanup.attempts, cleanup.last_error = 1, str(exc)[:2000]
        await session.commit()
        return True
    cleanup.attempts, cleanup.resolved_at = 1, utcnow()
    await session.commit()
    return False


def _undo_created(
    session: AsyncSession, providers: Providers, ref: _EventRef
) -> Callable[[], Awaitable[None]]:
    """Compensation for an event created before a transaction that then failed."""

    async def undo() -> None:
        try:
            await _cancel_event_or_queue(session, providers, ref)
        except Exception:  # the original failure is the one to report
            log.exception("calendar.compensation_failed", event_id=ref.event_id)

    return undo


def _set_closer(call: models.Call, closer: TeamMember) -> None:
    call.closer_id, call.closer_name, call.closer_email = closer.id, closer.name, closer.email


# --- POST /v1/calls ------------------------------------------------------------------------------
async def book(
    session: AsyncSession, auth: AuthContext, providers: Providers, body: CallCreate
) -> models.Call:
    """Book a call (SPEC §3). Fires ``call.booked`` (and ``lead.created`` for a new lead).

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
    created_ref: _EventRef | None = None
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
            closer, connection = await _round_robin_closer(
                session, providers, required(link, "booking link"), start, end, now
            )
            assignment = "round_robin"
        else:
            closer, maybe_connection = await _closer_with_calendar(session, org, body.closer_id)
            connection = _require_valid(maybe_connection)
            await _require_free(
                session, providers, connection, start, end, None, body.override_conflict
            )
        call.scheduled_at, call.ends_at, call.duration_minutes = start, end, minutes
        _set_closer(call, closer)
        call.conferencing_link = await providers.conferencing(session).issue_link(org, call.id)
        draft = _draft(call, lead, start, minutes)
        event_id = await _create_event(session, providers, connection, draft)
        call.calendar_event_id, call.calendar_grant_id = event_id, connection.id
        created_ref = _EventRef(org, connection.id, connection.provider, event_id, call.id)
        closer.last_booked_at = now
    elif body.closer_id is not None:
        intent_closer = await repository.get_member(session, org, body.closer_id)
        if (
            intent_closer is None
            or not intent_closer.is_active
            or intent_closer.role not in CLOSER_ROLES
        ):
            raise CloserNotFound()
        _set_closer(call, intent_closer)

    try:
        session.add(call)
        await session.flush()
        after = call_json(call)
        _record_change(session, call, auth, "booked", before={}, after=after)
        status_changed = lead.status == "new" and call.call_kind == "booking"
        if status_changed:
            lead.status = "booked"
            await session.flush()
        if lead_created:
            await record_event(session, org, EventType.lead_created, {"lead": lead_json(lead)})
        elif status_changed:
            await record_event(
                session,
                org,
                EventType.lead_updated,
                {
                    "lead": lead_json(lead),
                    "changed_fields": ["status"],
                    "previous": {"status": "new"},
                },
            )
        await record_event(
            session,
            org,
            EventType.call_booked,
            {
                "call": after,
                "lead": lead_contact(lead),
                "booked_by": _actor(auth),
                "assignment": assignment,
            },
        )
        await session.flush()
    except BaseException:
        await session.rollback()
        if created_ref is not None:
            await _undo_created(session, providers, created_ref)()
        raise
    undo = _undo_created(session, providers, created_ref) if created_ref else None
    await _commit_or_undo(session, undo)
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
    providers: Providers,
    link: BookingLink,
    start: datetime,
    end: datetime,
    now: datetime,
) -> tuple[TeamMember, CalendarConnection]:
    """The host that gets a call at ``start`` by the link's round robin (SPEC §5).

    ``start`` must be an offered slot. The hosts offered there are row-locked in id order (no
    deadlock between two bookings), checked again under the lock for the whole call
    ``[start, end)`` (availability, busy time, buffers: the slot may have been taken since it
    was offered), and the first of them in round-robin order gets the call. Raises
    ``SlotNotAvailable`` (409).
    """
    offered = await booking_links.free_hosts_for_slot(session, providers, link, start, now)
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
        providers,
        link.organization_id,
        list(hosts.values()),
        start,
        end,
        buffer_before_minutes=link.buffer_before_minutes,
        buffer_after_minutes=link.buffer_after_minutes,
    )
    chosen_id = await booking_links.round_robin_choice(
        session,
        link.organization_id,
        link.id,
        free,
        {m: (h.priority, h.weight) for m, h in hosts.items()},
        now,
    )
    if chosen_id is None:
        raise SlotNotAvailable()
    chosen = hosts[chosen_id]
    return chosen.member, chosen.connection


# --- POST /v1/calls/{id}/outcome -----------------------------------------------------------------
async def set_outcome(
    session: AsyncSession, auth: AuthContext, call_id: str, body: OutcomeSet
) -> models.Call:
    """Seed 003. Fires ``call.outcome_set`` (and ``call.no_show`` for ``no_show``).

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
    data = {
        "call": after,
        "lead": lead_contact(lead),
        "previous_status": before["status"],
        "set_by": _actor(auth),
    }
    await record_event(session, call.organization_id, EventType.call_outcome_set, data)
    if body.status == "no_show":
        await record_event(session, call.organization_id, EventType.call_no_show, data)
    return call


# --- POST /v1/calls/{id}/reassign-closer ---------------------------------------------------------
async def reassign_closer(
    session: AsyncSession,
    auth: AuthContext,
    providers: Providers,
    call_id: str,
    body: ReassignCloser,
) -> ReassignResult:
    """Seed 000: move a booked upcoming call to another closer.

    Checks in SPEC §3's order: ``CallNotFound`` (404), ``CallNotReassignable``,
    ``CallCancelled``, ``CallInPast`` (409), ``CloserNotFound`` (404), ``SameCloser``,
    ``CalendarNotConnected``, ``CloserConflict`` (409); ``CalendarProviderError`` (502) when the
    new event cannot be created (nothing changed then).

    Creates the new event and a new conferencing link, changes the call, its history and the
    ``call.closer_reassigned`` outbox row in one transaction, commits, then cancels the old event
    (``old_event_orphaned`` when that fails; a clean-up row retries it).
    """
    org = auth.organization_id
    call = await _locked_call(session, auth, call_id)
    _require_slot_call(call, utcnow())
    closer, connection = await _closer_with_calendar(session, org, body.new_closer_id)
    if call.closer_id == closer.id:
        raise SameCloser()
    connection = _require_valid(connection)
    start = required(call.scheduled_at, "scheduled_at")  # a booking call has both
    end = required(call.ends_at, "ends_at")
    await _require_free(session, providers, connection, start, end, call.id, body.override_conflict)
    return await _reassign_to(
        session, auth, providers, call, closer, connection, body.reason, "manual"
    )


async def _reassign_to(
    session: AsyncSession,
    auth: AuthContext,
    providers: Providers,
    call: models.Call,
    closer: TeamMember,
    connection: CalendarConnection,
    reason: str | None,
    assignment: str,
) -> ReassignResult:
    """The effects of a reassign whose checks passed (seed 000): new event, new link, one
    transaction, commit, then the old event cancelled (or queued for clean-up)."""
    org = call.organization_id
    start = required(call.scheduled_at, "scheduled_at")
    minutes = required(call.duration_minutes, "duration_minutes")
    lead = await get_lead(session, org, call.lead_id)
    old_ref = _old_event(call)
    previous_id, previous_name = call.closer_id, call.closer_name
    # The new link first, so the new closer's event carries it (the old one is revoked below).
    new_link = await providers.conferencing(session).issue_link(org, call.id)
    event_id = await _create_event(
        session, providers, connection, _draft(call, lead, start, minutes, link=new_link)
    )
    new_ref = _EventRef(org, connection.id, connection.provider, event_id, call.id)
    try:
        before = _snapshot(call, _REASSIGN_FIELDS)
        await _change_closer(session, providers, call, closer, connection, event_id, new_link)
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
            session,
            auth,
            call,
            lead,
            event_id,
            (previous_id, previous_name),
            reason,
            after,
            assignment,
        )
        cleanup_id = await _promise_cleanup(session, old_ref) if old_ref else None
        await session.flush()
    except BaseException:
        await session.rollback()
        await _undo_created(session, providers, new_ref)()
        raise
    await _commit_or_undo(session, _undo_created(session, providers, new_ref))

    if old_ref is not None:
        orphaned = await _keep_promise(session, providers, old_ref, cleanup_id)
        result = result.model_copy(update={"old_event_orphaned": orphaned})
    return result


_REASSIGN_FIELDS = (
    "closer_id",
    "closer_name",
    "closer_email",
    "calendar_event_id",
    "conferencing_link",
)


def _old_event(call: models.Call) -> _EventRef | None:
    if call.calendar_event_id is None or call.calendar_grant_id is None:
        return None
    return _EventRef(
        call.organization_id, call.calendar_grant_id, "", call.calendar_event_id, call.id
    )


async def _change_closer(
    session: AsyncSession,
    providers: Providers,
    call: models.Call,
    closer: TeamMember,
    connection: CalendarConnection,
    event_id: str,
    new_link: str,
) -> None:
    """Swap closer, calendar event and conferencing link (the old link stops working)."""
    if call.conferencing_link is not None:
        await providers.conferencing(session).revoke_link(
            call.organization_id, call.conferencing_link
        )
    call.conferencing_link = new_link
    _set_closer(call, closer)
    call.calendar_event_id, call.calendar_grant_id = event_id, connection.id
    call.sequence += 1
    closer.last_booked_at = utcnow()
    await session.flush()


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
    """Seed 000's result for a call whose closer just changed, and its
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
        EventType.call_closer_reassigned,
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
) -> dict[str, Any]:
    """``call.closer_reassigned`` data: all a partner needs to email the lead (SPEC §6)."""
    return {
        **result.model_dump(mode="json"),
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


async def auto_reassign(
    session: AsyncSession,
    auth: AuthContext,
    providers: Providers,
    call_id: str,
    reason: str | None,
) -> ReassignResult:
    """Give the call to another free host by round robin (SPEC §5, after seed 001's
    "automatically reassign").

    Candidates: the hosts of the call's booking link (or, for a call without one, every active
    closer with a valid calendar), other than the current closer, free for the whole call
    (inside their availability; clear of busy time with the link's buffers). Checks and
    effects are those of ``reassign_closer``; the webhook says ``assignment: "round_robin"``.
    Raises ``CallNotFound`` (404), ``CallNotReassignable``, ``CallCancelled``, ``CallInPast``,
    ``NoHostAvailable`` (409), ``CalendarProviderError`` (502).
    """
    org = auth.organization_id
    now = utcnow()
    call = await _locked_call(session, auth, call_id)
    _require_slot_call(call, now)
    start = required(call.scheduled_at, "scheduled_at")
    end = required(call.ends_at, "ends_at")
    link = await session.get(BookingLink, call.booking_link_id) if call.booking_link_id else None
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
    free = await booking_links.free_hosts_for_span(
        session,
        providers,
        org,
        hosts,
        start,
        end,
        buffer_before_minutes=link.buffer_before_minutes if link else 0,
        buffer_after_minutes=link.buffer_after_minutes if link else 0,
    )
    by_id = {h.member.id: h for h in hosts}
    chosen_id = await booking_links.round_robin_choice(
        session,
        org,
        link.id if link else None,
        free,
        {m: (h.priority, h.weight) for m, h in by_id.items()},
        now,
    )
    if chosen_id is None:
        raise NoHostAvailable()
    chosen = by_id[chosen_id]
    return await _reassign_to(
        session, auth, providers, call, chosen.member, chosen.connection, reason, "round_robin"
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
    providers: Providers,
    call_id: str,
    body: Reschedule,
) -> RescheduleOutcome:
    """After seed 002: move a booked upcoming call, optionally to a new closer.

    Raises ``CallNotFound`` (404), ``CallNotReassignable``, ``CallCancelled``, ``CallInPast``
    (409), ``SlotInPast`` (400), ``CloserNotFound`` (404), ``CalendarNotConnected`` and
    ``CloserConflict`` (409, unless ``override_conflict``), ``CalendarProviderError`` (502).
    Fires ``call.rescheduled`` (and ``call.closer_reassigned`` when the closer changes).
    """
    org = auth.organization_id
    now = utcnow()
    call = await _locked_call(session, auth, call_id)
    _require_slot_call(call, now)
    if body.scheduled_at <= now:
        raise SlotInPast()
    previous_at = required(call.scheduled_at, "scheduled_at")  # a booking call has both
    minutes = body.duration_minutes or required(call.duration_minutes, "duration_minutes")
    start, end = body.scheduled_at, body.scheduled_at + timedelta(minutes=minutes)

    closer_id = body.new_closer_id or call.closer_id
    if closer_id is None:
        raise CloserNotFound()
    changing_closer = closer_id != call.closer_id
    closer, connection = await _closer_with_calendar(session, org, closer_id)
    connection = _require_valid(connection)
    conflicts = await _require_free(
        session, providers, connection, start, end, call.id, body.override_conflict
    )

    lead = await get_lead(session, org, call.lead_id)
    fields = ["scheduled_at", "duration_minutes", "time_zone", "notes", *_REASSIGN_FIELDS]
    before = _snapshot(call, fields)
    previous_id, previous_name = call.closer_id, call.closer_name
    # A new event when the closer changes, or when the call's event is not on the closer's
    # current calendar (it was disconnected and connected again); else the event moves.
    needs_new_event = (
        changing_closer or call.calendar_event_id is None or call.calendar_grant_id != connection.id
    )
    old_ref = _old_event(call) if needs_new_event else None
    new_link = (
        await providers.conferencing(session).issue_link(org, call.id) if changing_closer else None
    )
    new_draft = _draft(call, lead, start, minutes, link=new_link)

    undo: Callable[[], Awaitable[None]] | None
    if needs_new_event:
        event_id = await _create_event(session, providers, connection, new_draft)
        undo = _undo_created(
            session,
            providers,
            _EventRef(org, connection.id, connection.provider, event_id, call.id),
        )
    else:
        event_id = call.calendar_event_id or ""
        old_draft = _draft(call, lead, previous_at, required(call.duration_minutes, "duration"))
        try:
            calendar = providers.calendars(session, connection.provider)
            await calendar.move_event(connection, event_id, new_draft)
        except CalendarError as exc:
            raise CalendarProviderError(f"Moving the calendar event failed: {exc}") from exc
        undo = _undo_move(session, providers, connection.id, org, event_id, old_draft)

    try:
        if changing_closer:
            await _change_closer(
                session, providers, call, closer, connection, event_id, required(new_link, "link")
            )
        else:
            call.calendar_event_id, call.calendar_grant_id = event_id, connection.id
        call.scheduled_at, call.ends_at, call.duration_minutes = start, end, minutes
        if body.time_zone is not None:
            call.time_zone = body.time_zone
        if body.notes is not None:
            call.notes = body.notes
        call.reschedule_count += 1
        call.sequence += 1
        await session.flush()
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
            EventType.call_rescheduled,
            {
                "call": after,
                "lead": lead_contact(lead),
                "previous_scheduled_at": before["scheduled_at"],
                "scheduled_at": after["scheduled_at"],
                "reason": body.reason,
                "rescheduled_by": _actor(auth),
                "is_slot_free": not conflicts,
            },
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
        cleanup_id = await _promise_cleanup(session, old_ref) if old_ref else None
        await session.flush()
    except BaseException:
        await session.rollback()
        await undo()
        raise
    await _commit_or_undo(session, undo)
    if old_ref is not None:
        await _keep_promise(session, providers, old_ref, cleanup_id)
    return RescheduleOutcome(call, not conflicts, conflicts, previous_at)


def _undo_move(
    session: AsyncSession,
    providers: Providers,
    connection_id: str,
    organization_id: str,
    event_id: str,
    old_draft: EventDraft,
) -> Callable[[], Awaitable[None]]:
    """Compensation for an event moved before a transaction that then failed: move it back."""

    async def undo() -> None:
        try:
            connection = await repository.get_connection_by_id(
                session, organization_id, connection_id
            )
            if connection is not None:
                calendar = providers.calendars(session, connection.provider)
                await calendar.move_event(connection, event_id, old_draft)
                await session.commit()
        except Exception:
            await session.rollback()
            log.exception("calendar.compensation_failed", event_id=event_id)

    return undo


# --- POST /v1/calls/{id}/cancel ------------------------------------------------------------------
async def cancel(
    session: AsyncSession,
    auth: AuthContext,
    providers: Providers,
    call_id: str,
    reason: str | None,
) -> models.Call:
    """Cancel an upcoming call: the calendar event is cancelled, the link revoked.

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
        await providers.conferencing(session).revoke_link(
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
        EventType.call_cancelled,
        {"call": after, "lead": lead_contact(lead), "reason": reason, "cancelled_by": _actor(auth)},
    )
    old_ref = _old_event(call)
    cleanup_id = await _promise_cleanup(session, old_ref) if old_ref else None
    await _commit_or_undo(session, None)
    if old_ref is not None:
        await _keep_promise(session, providers, old_ref, cleanup_id)
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
        changes["action_items"] = []  # a list on the wire (seed 004): null clears it to empty
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
        EventType.call_updated,
        {
            "call": call_json(call),
            "changed_fields": sorted(after),
            "previous": before,
            "updated_by": _actor(auth),
        },
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

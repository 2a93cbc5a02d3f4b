"""``/v1/calls``: the operations of docs/api.md "Calls". Thin: parse, call the service, shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from closerdesk.auth.dependencies import ReadKey, WriteKey
from closerdesk.calendars.unit_of_work import calendar_change
from closerdesk.calls import (
    absence,
    booking,
    bulk,
    calendar_links,
    candidates,
    confirmation,
    ics_token,
    reassign,
    repository,
    service,
    steps,
)
from closerdesk.calls.schemas import (
    AbsenceMark,
    AutoReassign,
    BulkReassign,
    BulkReassignResult,
    CalendarLinks,
    Call,
    CallCreate,
    CallHistoryEntry,
    CallStatus,
    CallUpdate,
    Cancel,
    Confirm,
    Decline,
    LossReason,
    OutcomeSet,
    ReasonCode,
    ReassignCandidate,
    ReassignCloser,
    ReassignResult,
    Reschedule,
    RescheduleResult,
)
from closerdesk.config import Settings
from closerdesk.db import Database, Session
from closerdesk.errors import (
    BookingLinkInactive,
    BookingLinkNotFound,
    BulkLimitExceeded,
    CalendarNotConnected,
    CalendarProviderError,
    CallCancelled,
    CallDeclined,
    CallInPast,
    CallLeadMismatch,
    CallNotConfirmed,
    CallNotFound,
    CallNotPending,
    CallNotReassignable,
    CallNotScheduled,
    CallNotStarted,
    CloserConflict,
    CloserNotFound,
    LeadNotFound,
    NoHostAvailable,
    PaymentAlreadyLinked,
    PaymentNotFound,
    ProductInactive,
    ProductNotFound,
    ReservationConsumed,
    ReservationExpired,
    ReservationMismatch,
    ReservationNotFound,
    SameCloser,
    SetterNotFound,
    SlotInPast,
    SlotNotAvailable,
    responses,
)
from closerdesk.kit.pagination import Cursor, Limit, paginate_as
from closerdesk.kit.rows import validate_row
from closerdesk.kit.schemas import Envelope, ListEnvelope, UTCDateTime
from closerdesk.kit.time import utcnow
from closerdesk.models import Call as CallRow
from closerdesk.providers import ProvidersDep

router = APIRouter(prefix="/v1/calls", tags=["calls"])


@router.get("", response_model=ListEnvelope[Call])
async def list_calls(
    session: Session,
    auth: ReadKey,
    status_: Annotated[CallStatus | None, Query(alias="status")] = None,
    lead_id: Annotated[str | None, Query(max_length=40)] = None,
    closer_id: Annotated[str | None, Query(max_length=64)] = None,
    setter_id: Annotated[str | None, Query(max_length=64)] = None,
    booking_link_id: Annotated[str | None, Query(max_length=40)] = None,
    is_upcoming: bool | None = None,
    scheduled_after: Annotated[UTCDateTime | None, Query()] = None,
    scheduled_before: Annotated[UTCDateTime | None, Query()] = None,
    reason_code: Annotated[ReasonCode | None, Query()] = None,
    loss_reason: Annotated[LossReason | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListEnvelope[Call]:
    """List calls ordered by ``scheduled_at`` then ``id`` (intent calls, unscheduled, last).

    ``is_upcoming=true`` keeps calls not cancelled or declined whose ``scheduled_at`` is in
    the future (``pending`` ones included); ``false`` keeps the others. Times are RFC 3339;
    ``scheduled_after`` is inclusive, ``scheduled_before`` exclusive. ``reason_code`` keeps
    calls whose latest cancel, decline, reschedule or reassign gave that code; ``loss_reason``
    keeps ``lost`` calls lost for that reason (docs/sales-floor.md, "Reason codes").
    """
    stmt = repository.list_calls_query(
        auth.organization_id,
        status=status_,
        lead_id=lead_id,
        closer_id=closer_id,
        setter_id=setter_id,
        booking_link_id=booking_link_id,
        scheduled_after=scheduled_after,
        scheduled_before=scheduled_before,
        reason_code=reason_code,
        loss_reason=loss_reason,
    )
    if is_upcoming is not None:
        stmt = repository.filter_upcoming(stmt, utcnow(), upcoming=is_upcoming)
    return await paginate_as(
        session, Call, stmt, keys=[CallRow.scheduled_at, CallRow.id], limit=limit, cursor=cursor
    )


@router.post(
    "",
    response_model=Envelope[Call],
    status_code=status.HTTP_201_CREATED,
    responses=responses(
        SlotInPast,
        BookingLinkNotFound,
        BookingLinkInactive,
        SlotNotAvailable,
        LeadNotFound,
        SetterNotFound,
        ProductNotFound,
        CloserNotFound,
        ProductInactive,
        CalendarNotConnected,
        CloserConflict,
        CalendarProviderError,
        ReservationNotFound,
        ReservationConsumed,
        ReservationMismatch,
        ReservationExpired,
    ),
)
async def book_call(
    body: CallCreate, session: Session, auth: WriteKey, providers: ProvidersDep
) -> Envelope[Call]:
    """Book a call. A ``booking`` needs ``scheduled_at`` (future), ``duration_minutes`` and a
    closer with a valid calendar; the closer's calendar gets an event and the call a
    conferencing link. An ``intent`` call has neither. Fires ``call.booked``."""
    async with calendar_change(session, providers) as change:
        # The answer is read before the commit: nothing after it may touch the ORM rows.
        data = Call.model_validate(await booking.book(session, auth, change, body))
    return Envelope(data=data)


@router.post(
    "/bulk-reassign",
    response_model=Envelope[BulkReassignResult],
    responses=responses(BulkLimitExceeded, CloserNotFound),
)
async def bulk_reassign(
    body: BulkReassign,
    request: Request,
    session: Session,
    auth: WriteKey,
    providers: ProvidersDep,
) -> Envelope[BulkReassignResult]:
    """Move a closer's upcoming calls (at most 500) to one closer or, with ``to: "auto"``,
    over the free hosts by round robin (docs/sales-floor.md, "Bulk reassign").

    ``dry_run: true`` answers the plan and changes nothing. Otherwise each call is reassigned
    in its own transaction, with the checks and effects of ``reassign-closer`` /
    ``auto-reassign`` (calendar events, new conferencing link, history, one
    ``call.closer_reassigned`` per call); a call that fails keeps its closer and its item
    carries the error ``code``, the others go on. Always 200 once the batch is read; per-call
    failures are in ``results``."""
    database: Database = request.app.state.database
    result = await bulk.bulk_reassign(session, database, auth, providers, body)
    return Envelope(data=result)


@router.get("/{call_id}", response_model=Envelope[Call], responses=responses(CallNotFound))
async def get_call(call_id: str, session: Session, auth: ReadKey) -> Envelope[Call]:
    """The full call object (Aura: get call) plus closer name/email, time zone, calendar event id,
    cancellation and reschedule count."""
    row = await repository.call_row(session, auth.organization_id, call_id, Call)
    if row is None:
        raise CallNotFound()
    return Envelope[Call].model_construct(data=validate_row(Call, row))


@router.patch(
    "/{call_id}",
    response_model=Envelope[Call],
    responses=responses(
        CallNotFound,
        ProductNotFound,
        SetterNotFound,
        PaymentNotFound,
        PaymentAlreadyLinked,
        CallLeadMismatch,
    ),
)
async def update_call(
    call_id: str, body: CallUpdate, session: Session, auth: WriteKey
) -> Envelope[Call]:
    """Partial update for recorders and analysers feeding results back. Fires ``call.updated``
    when something changed."""
    return Envelope(data=Call.model_validate(await service.update(session, auth, call_id, body)))


@router.post(
    "/{call_id}/outcome",
    response_model=Envelope[Call],
    responses=responses(
        CallNotFound, CallCancelled, CallDeclined, CallNotConfirmed, CallNotStarted
    ),
)
async def set_outcome(
    call_id: str, body: OutcomeSet, session: Session, auth: WriteKey
) -> Envelope[Call]:
    """Aura set-outcome: set the outcome (``shown | no_show | closed | lost | follow_up``) of a call
    that has started, with ``loss_reason`` for ``lost`` (optional; 400 with another status).
    May be corrected later. Fires ``call.outcome_set`` (+ ``call.no_show``)."""
    call = await service.set_outcome(session, auth, call_id, body)
    return Envelope(data=Call.model_validate(call))


@router.post(
    "/{call_id}/reassign-closer",
    response_model=Envelope[ReassignResult],
    responses=responses(
        CallNotFound,
        CloserNotFound,
        CallNotReassignable,
        CallCancelled,
        CallDeclined,
        CallInPast,
        SameCloser,
        CalendarNotConnected,
        CloserConflict,
        CalendarProviderError,
    ),
)
async def reassign_closer(
    call_id: str, body: ReassignCloser, session: Session, auth: WriteKey, providers: ProvidersDep
) -> Envelope[ReassignResult]:
    """Aura reassign: give a booked upcoming call to another closer. The new closer gets a calendar
    event and the call a new conferencing link (the old one stops working); the old event is
    removed after the commit (``old_event_orphaned`` if that failed; it is retried).
    Fires ``call.closer_reassigned``."""
    async with calendar_change(session, providers) as change:
        result = await reassign.reassign_closer(session, auth, change, call_id, body)
    return Envelope(data=result.model_copy(update={"old_event_orphaned": change.orphaned}))


@router.post(
    "/{call_id}/reschedule",
    response_model=Envelope[RescheduleResult],
    responses=responses(
        SlotInPast,
        CallNotFound,
        CloserNotFound,
        CallNotReassignable,
        CallCancelled,
        CallDeclined,
        CallInPast,
        CalendarNotConnected,
        CloserConflict,
        CalendarProviderError,
    ),
)
async def reschedule_call(
    call_id: str, body: Reschedule, session: Session, auth: WriteKey, providers: ProvidersDep
) -> Envelope[RescheduleResult]:
    """After eventCalls: move a booked upcoming call to a new future time (and optionally a new
    closer). Answers ``is_slot_free``, the ``conflicts`` overridden and
    ``previous_scheduled_at``. Fires ``call.rescheduled``."""
    async with calendar_change(session, providers) as change:
        outcome = await service.reschedule(session, auth, change, call_id, body)
        call = Call.model_validate(outcome.call)  # before the commit, as in book_call
    return Envelope(
        data=RescheduleResult(
            **call.model_dump(exclude={"has_recording", "has_analysis"}),
            is_slot_free=outcome.is_slot_free,
            conflicts=outcome.conflicts,
            previous_scheduled_at=outcome.previous_scheduled_at,
        )
    )


@router.post(
    "/{call_id}/cancel",
    response_model=Envelope[Call],
    responses=responses(CallNotFound, CallCancelled, CallDeclined, CallInPast),
)
async def cancel_call(
    call_id: str,
    session: Session,
    auth: WriteKey,
    providers: ProvidersDep,
    body: Cancel | None = None,
) -> Envelope[Call]:
    """Cancel an upcoming call: its calendar event is cancelled and its conferencing link
    revoked. ``reason_code`` is one of docs/sales-floor.md "Reason codes". Fires
    ``call.cancelled``."""
    body = body or Cancel()
    async with calendar_change(session, providers) as change:
        cancelled = await service.cancel(
            session, auth, change, call_id, body.reason, reason_code=body.reason_code
        )
        data = Call.model_validate(cancelled)
    return Envelope(data=data)


@router.post(
    "/{call_id}/confirm",
    response_model=Envelope[Call],
    responses=responses(
        CallNotFound,
        CloserNotFound,
        CallNotPending,
        CallInPast,
        CalendarNotConnected,
        CloserConflict,
        CalendarProviderError,
    ),
)
async def confirm_call(
    call_id: str,
    session: Session,
    auth: WriteKey,
    providers: ProvidersDep,
    body: Confirm | None = None,
) -> Envelope[Call]:
    """Cal.com's confirm a booking that requires confirmation: a ``pending`` upcoming call
    becomes ``scheduled`` and gets its calendar event and conferencing link now. The
    closer's calendar is asked live for the slot (409 ``CLOSER_CONFLICT`` unless
    ``override_conflict``); a provider failure (502) leaves the call pending. Fires
    ``call.confirmed``."""
    async with calendar_change(session, providers) as change:
        call = await confirmation.confirm(session, auth, change, call_id, body or Confirm())
        data = Call.model_validate(call)  # before the commit, as in book_call
    return Envelope(data=data)


@router.post(
    "/{call_id}/decline",
    response_model=Envelope[Call],
    responses=responses(CallNotFound, CallNotPending),
)
async def decline_call(
    call_id: str, session: Session, auth: WriteKey, body: Decline | None = None
) -> Envelope[Call]:
    """Cal.com's decline a booking that requires confirmation: a ``pending`` call becomes
    ``declined`` (with ``reason``/``reason_code``) and its slot is free again. Fires
    ``call.declined``."""
    call = await confirmation.decline(session, auth, call_id, body or Decline())
    return Envelope(data=Call.model_validate(call))


@router.post(
    "/{call_id}/auto-reassign",
    response_model=Envelope[ReassignResult],
    responses=responses(
        CallNotFound,
        CallNotReassignable,
        CallCancelled,
        CallDeclined,
        CallInPast,
        NoHostAvailable,
        CalendarProviderError,
    ),
)
async def auto_reassign_call(
    call_id: str,
    session: Session,
    auth: WriteKey,
    providers: ProvidersDep,
    body: AutoReassign | None = None,
) -> Envelope[ReassignResult]:
    """Give the call to another free host chosen by round robin (docs/api.md): a host of its
    booking link (or any closer for a call without one), free for the whole call. Same effects
    as ``reassign-closer``; the webhook carries ``assignment: "round_robin"``."""
    body = body or AutoReassign()
    async with calendar_change(session, providers) as change:
        result = await reassign.auto_reassign(
            session, auth, change, call_id, body.reason, reason_code=body.reason_code
        )
    return Envelope(data=result.model_copy(update={"old_event_orphaned": change.orphaned}))


@router.post(
    "/{call_id}/absence",
    response_model=Envelope[Call],
    responses=responses(
        CallNotFound,
        CallCancelled,
        CallDeclined,
        CallNotConfirmed,
        CallNotScheduled,
        CallNotStarted,
    ),
)
async def mark_absence(
    call_id: str, body: AbsenceMark, session: Session, auth: WriteKey
) -> Envelope[Call]:
    """After Cal.com's "mark a booking absence": who missed a call that has started. ``lead``
    makes it ``no_show``; ``host`` sets ``host_no_show`` (round robin does not count it).
    Marks add up; one that changes nothing records nothing. Fires ``call.absence_marked``
    (+ ``call.no_show`` when the status becomes ``no_show``). docs/sales-floor.md, "Absence"."""
    call = await absence.mark_absence(session, auth, call_id, body)
    return Envelope(data=Call.model_validate(call))


@router.get(
    "/{call_id}/reassign-candidates",
    response_model=Envelope[list[ReassignCandidate]],
    responses=responses(CallNotFound, CallNotReassignable, CallCancelled, CallDeclined, CallInPast),
)
async def get_reassign_candidates(
    call_id: str, session: Session, auth: ReadKey
) -> Envelope[list[ReassignCandidate]]:
    """Every active closer of the organization for this call, the booking link's hosts first in
    round-robin order: ``{member_id, name, available, reasons[], conflicts[], period_bookings,
    rank}`` (docs/sales-floor.md "Reassign candidates"). Calendar busy time is closerdesk's
    stored copy (no provider is asked); checks 1–4 of reassign apply."""
    return Envelope(data=await candidates.reassign_candidates(session, auth, call_id))


@router.get(
    "/{call_id}/calendar-links",
    response_model=Envelope[CalendarLinks],
    responses=responses(CallNotFound, CallNotScheduled, CallCancelled, CallDeclined),
)
async def get_calendar_links(
    call_id: str, request: Request, session: Session, auth: ReadKey
) -> Envelope[CalendarLinks]:
    """Add-to-calendar links for the lead: Google, Outlook (live), Office 365, Yahoo, and the
    ``.ics`` download: a public signed ``/ics/{token}`` that needs no API key and always
    serves the call as it is now (``docs/links.md``, "The calendar file"). A pending call's
    links have no join link yet and its file says ``STATUS:TENTATIVE``."""
    call, lead = await steps.call_with_lead(session, auth, call_id)
    if call.call_kind == "intent" or call.scheduled_at is None:
        raise CallNotScheduled()
    steps.require_not_freed(call)
    settings: Settings = request.app.state.settings
    ics_url = ics_token.ics_url(settings.public_base_url, settings.secret_key, call.id)
    description = await repository.booking_link_description(session, call)
    links = calendar_links.calendar_links(call, lead, ics_url, booking_link_description=description)
    return Envelope(data=CalendarLinks(**links))


@router.get(
    "/{call_id}/ics",
    operation_id="getCallIcs",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {}}, "description": "The call as iCalendar"},
        **responses(CallNotFound, CallNotScheduled),
    },
)
async def get_ics(call_id: str, session: Session, auth: ReadKey) -> Response:
    """The call as an iCalendar file (``text/calendar``): stable UID, ``SEQUENCE`` bumped on
    every reschedule/reassign/cancel/confirm/decline, ``STATUS:TENTATIVE`` while pending,
    ``STATUS:CANCELLED`` once cancelled or declined."""
    call, lead = await steps.call_with_lead(session, auth, call_id)
    if call.call_kind == "intent" or call.scheduled_at is None:
        raise CallNotScheduled()
    description = await repository.booking_link_description(session, call)
    return Response(
        content=calendar_links.ics(call, lead, booking_link_description=description),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{call.id}.ics"'},
    )


@router.get(
    "/{call_id}/history",
    operation_id="getCallHistory",
    response_model=Envelope[list[CallHistoryEntry]],
    responses=responses(CallNotFound),
)
async def call_history(
    call_id: str, session: Session, auth: ReadKey
) -> Envelope[list[CallHistoryEntry]]:
    """Every change of the call, oldest first: who, when, before/after, reason."""
    await steps.get_call(session, auth, call_id)
    rows = await repository.history(session, auth.organization_id, call_id)
    return Envelope(data=[CallHistoryEntry.model_validate(r) for r in rows])

"""``/v1/calls``: the operations of docs/api.md "Calls". Thin: parse, call the service, shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from closerdesk.auth.dependencies import ReadKey, WriteKey
from closerdesk.calendars.unit_of_work import calendar_change
from closerdesk.calls import (
    booking,
    calendar_links,
    ics_token,
    reassign,
    repository,
    service,
    steps,
)
from closerdesk.calls.schemas import (
    AutoReassign,
    CalendarLinks,
    Call,
    CallCreate,
    CallHistoryEntry,
    CallStatus,
    CallUpdate,
    Cancel,
    OutcomeSet,
    ReassignCloser,
    ReassignResult,
    Reschedule,
    RescheduleResult,
)
from closerdesk.config import Settings
from closerdesk.db import Session
from closerdesk.errors import (
    BookingLinkInactive,
    BookingLinkNotFound,
    CalendarNotConnected,
    CalendarProviderError,
    CallCancelled,
    CallInPast,
    CallLeadMismatch,
    CallNotFound,
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
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListEnvelope[Call]:
    """List calls ordered by ``scheduled_at`` then ``id`` (intent calls, unscheduled, last).

    ``is_upcoming=true`` keeps calls not cancelled whose ``scheduled_at`` is in the future;
    ``false`` keeps the others. Times are RFC 3339; ``scheduled_after`` is inclusive,
    ``scheduled_before`` exclusive.
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
    responses=responses(CallNotFound, CallCancelled, CallNotStarted),
)
async def set_outcome(
    call_id: str, body: OutcomeSet, session: Session, auth: WriteKey
) -> Envelope[Call]:
    """Aura set-outcome: set the outcome (``shown | no_show | closed | lost | follow_up``) of a call
    that has started. May be corrected later. Fires ``call.outcome_set`` (+ ``call.no_show``)."""
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
    responses=responses(CallNotFound, CallCancelled, CallInPast),
)
async def cancel_call(
    call_id: str,
    session: Session,
    auth: WriteKey,
    providers: ProvidersDep,
    body: Cancel | None = None,
) -> Envelope[Call]:
    """Cancel an upcoming call: its calendar event is cancelled and its conferencing link
    revoked. Fires ``call.cancelled``."""
    reason = body.reason if body is not None else None
    async with calendar_change(session, providers) as change:
        data = Call.model_validate(await service.cancel(session, auth, change, call_id, reason))
    return Envelope(data=data)


@router.post(
    "/{call_id}/auto-reassign",
    response_model=Envelope[ReassignResult],
    responses=responses(
        CallNotFound,
        CallNotReassignable,
        CallCancelled,
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
    reason = body.reason if body is not None else None
    async with calendar_change(session, providers) as change:
        result = await reassign.auto_reassign(session, auth, change, call_id, reason)
    return Envelope(data=result.model_copy(update={"old_event_orphaned": change.orphaned}))


@router.get(
    "/{call_id}/calendar-links",
    response_model=Envelope[CalendarLinks],
    responses=responses(CallNotFound, CallNotScheduled, CallCancelled),
)
async def get_calendar_links(
    call_id: str, request: Request, session: Session, auth: ReadKey
) -> Envelope[CalendarLinks]:
    """Add-to-calendar links for the lead: Google, Outlook (live), Office 365, Yahoo, and the
    ``.ics`` download: a public signed ``/ics/{token}`` that needs no API key and always
    serves the call as it is now (``docs/links.md``, "The calendar file")."""
    call, lead = await steps.call_with_lead(session, auth, call_id)
    if call.call_kind == "intent" or call.scheduled_at is None:
        raise CallNotScheduled()
    if call.status == "cancelled":
        raise CallCancelled()
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
    every reschedule/reassign/cancel, ``STATUS:CANCELLED`` once cancelled."""
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

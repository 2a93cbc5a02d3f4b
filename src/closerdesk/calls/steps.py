"""Steps shared by the call operations: reading a call, locking it and its closer, the history
row and its snapshot, the checks every slot-changing operation makes (docs/api.md "Reassign").

Concurrency: the closer's row is locked (PostgreSQL ``FOR NO KEY UPDATE``; SQLite write
transactions begin ``IMMEDIATE``) before the conflict check, so two requests can never both
place one closer into overlapping time without ``override_conflict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk import models
from closerdesk.auth.service import AuthContext
from closerdesk.booking_links.service import is_active_closer
from closerdesk.calendars import repository as calendars_repository
from closerdesk.calendars.accounts import account_of
from closerdesk.calendars.drafts import event_draft
from closerdesk.calendars.provider import CalendarAccount
from closerdesk.calendars.unit_of_work import CalendarChange
from closerdesk.calls import repository
from closerdesk.calls.conflicts import conflict_error
from closerdesk.calls.schemas import (
    Call,
    CandidateReason,
    ConflictItem,
)
from closerdesk.errors import (
    CalendarNotConnected,
    CallCancelled,
    CallDeclined,
    CallInPast,
    CallNotConfirmed,
    CallNotFound,
    CallNotReassignable,
    CloserNotFound,
    SameCloser,
)
from closerdesk.kit.ids import new_id
from closerdesk.kit.secrets import SecretBox
from closerdesk.leads.service import get_lead
from closerdesk.models import BookingLink, CalendarConnection, CallEvent, TeamMember


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
def actor(auth: AuthContext) -> dict[str, str]:
    return {"type": "api_key", "id": auth.api_key_id}


def record_change(
    session: AsyncSession,
    call: models.Call,
    auth: AuthContext,
    kind: str,
    *,
    before: dict[str, Any],
    after: dict[str, Any],
    reason: str | None = None,
    reason_code: str | None = None,
) -> None:
    """Append the call's history row (``CallEvent``) of change ``kind``: who, the changed
    fields before and after, and why (``reason`` in words, ``reason_code`` one of
    docs/sales-floor.md "Reason codes")."""
    session.add(
        CallEvent(
            id=new_id("cev"),
            organization_id=call.organization_id,
            call_id=call.id,
            type=kind,
            actor_type="api_key",
            actor_id=auth.api_key_id,
            reason=reason,
            reason_code=reason_code,
            before=before,
            after=after,
        )
    )


def record_fields_change(
    session: AsyncSession,
    call: models.Call,
    auth: AuthContext,
    kind: str,
    before: dict[str, Any],
    *,
    reason: str | None = None,
    reason_code: str | None = None,
) -> dict[str, Any]:
    """Append history row ``kind`` with ``before`` (a :func:`snapshot`) and the same fields as
    they are now; answers the call as it goes on the wire now (for the change's webhook)."""
    after = call_json(call)
    record_change(
        session,
        call,
        auth,
        kind,
        before=before,
        after={k: after[k] for k in before},
        reason=reason,
        reason_code=reason_code,
    )
    return after


def snapshot(call: models.Call, fields: Sequence[str]) -> dict[str, Any]:
    """The JSON values of ``fields`` of the call, for history rows."""
    full = call_json(call)
    return {name: full[name] for name in fields}


async def locked_call(session: AsyncSession, auth: AuthContext, call_id: str) -> models.Call:
    call = await repository.get_call(session, auth.organization_id, call_id, lock=True)
    if call is None:
        raise CallNotFound()
    return call


async def locked_call_with_lead(
    session: AsyncSession, auth: AuthContext, call_id: str
) -> tuple[models.Call, models.Lead, BookingLink | None]:
    """The call (row-locked), its lead and booking link, read in one query.
    Raises ``CallNotFound`` (404)."""
    found = await repository.locked_call_with_lead(session, auth.organization_id, call_id)
    if found is None:
        raise CallNotFound()
    return found


class SlotCall(Protocol):
    """What :func:`require_slot_call` reads: a ``Call``, or a row of its columns."""

    @property
    def call_kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def scheduled_at(self) -> datetime | None: ...


def require_not_freed(call: SlotCall) -> None:
    """A call that still holds its slot: ``CallCancelled``, ``CallDeclined`` (409) for one
    that gave it up (``models.call.FREED_STATUSES``)."""
    if call.status == "cancelled":
        raise CallCancelled()
    if call.status == "declined":
        raise CallDeclined()


def require_slot_call(call: SlotCall, now: datetime) -> None:
    """Aura's reassign constraints, in the order of docs/api.md "Reassign" (after 404):
    ``CallNotReassignable``, ``CallCancelled``, ``CallDeclined``, ``CallInPast`` (409)."""
    if call.call_kind == "intent":
        raise CallNotReassignable()
    require_not_freed(call)
    if call.scheduled_at is None or call.scheduled_at <= now:
        raise CallInPast()


def require_confirmed_call(call: models.Call) -> None:
    """A call that was booked and stands, so that it can have happened (outcome, absence):
    ``CallCancelled``, ``CallDeclined``, ``CallNotConfirmed`` (a ``pending`` call; 409)."""
    require_not_freed(call)
    if is_pending(call):
        raise CallNotConfirmed()


@dataclass(frozen=True)
class Closer:
    """A closer able to take the call: the row (locked) and its calendar as the provider
    sees it."""

    member: TeamMember
    account: CalendarAccount


async def closer_with_calendar(
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
    require_active_closer(closer)
    mine = next((c for c in connections if c.member_id == closer.id), None)
    old = next((c for c in connections if c.id == old_grant_id), None)
    return closer, mine, old


def require_active_closer(member: TeamMember | None) -> TeamMember:
    """``member`` when it can take calls (an active closer or admin); raises
    ``CloserNotFound`` (404) for None (missing, another organization's), an inactive member or
    a setter."""
    if member is None or not is_active_closer(member):
        raise CloserNotFound()
    return member


def closer_reasons(
    current_closer_id: str | None,
    closer_id: str,
    connection: CalendarConnection | None,
    conflicts: Sequence[ConflictItem] = (),
) -> list[CandidateReason]:
    """Why ``closer_id`` cannot take a call held by ``current_closer_id`` by reassign, in the
    order of docs/api.md
    "Reassign" (checks 6–8): ``SAME_CLOSER``, ``CALENDAR_NOT_CONNECTED`` (no connection, or an
    ``invalid`` one), ``CLOSER_CONFLICT`` (``conflicts`` not empty). ``[]``: no objection.
    Reassign raises the first (:func:`raise_first`); reassign candidates list them all."""
    reasons: list[CandidateReason] = []
    if current_closer_id == closer_id:
        reasons.append("SAME_CLOSER")
    if connection is None or connection.status != "valid":
        reasons.append("CALENDAR_NOT_CONNECTED")
    if conflicts:
        reasons.append("CLOSER_CONFLICT")
    return reasons


def raise_first(reasons: Sequence[CandidateReason], conflicts: Sequence[ConflictItem] = ()) -> None:
    """Raise the error of the first of :func:`closer_reasons`: ``SameCloser``,
    ``CalendarNotConnected``, ``CloserConflict`` (409, with ``conflicts`` as details)."""
    if not reasons:
        return
    first = reasons[0]
    if first == "SAME_CLOSER":
        raise SameCloser()
    if first == "CALENDAR_NOT_CONNECTED":
        raise CalendarNotConnected()
    if first == "CLOSER_CONFLICT":
        raise conflict_error(conflicts)
    raise ValueError(f"{first} is not a reassign check")


def require_valid(
    closer: TeamMember, connection: CalendarConnection | None, box: SecretBox
) -> Closer:
    """The closer and its calendar; raises ``CalendarNotConnected`` (409) without a valid one."""
    if connection is None or connection.status != "valid":
        raise CalendarNotConnected()
    return Closer(closer, account_of(connection, box))


async def old_event(
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


async def place_on_calendar(
    session: AsyncSession,
    change: CalendarChange,
    call: models.Call,
    lead: models.Lead,
    chosen: Closer,
    booking_link_description: str | None,
) -> None:
    """Put a call whose time and closer are set on the closer's calendar: a new conferencing
    link, then the event carrying it (through ``change``: undone if the transaction does not
    commit). Booking does this at once; a call that needs confirmation when it is confirmed
    (docs/sales-floor.md, "Confirmation"). Raises ``CalendarProviderError`` (502),
    ``CalendarNotConnected`` (409: the calendar refused the credentials)."""
    conferencing = change.providers.conferencing(session)
    call.conferencing_link = await conferencing.issue_link(call.organization_id, call.id)
    draft = event_draft(
        call,
        lead,
        closer_name=chosen.member.name,
        booking_link_description=booking_link_description,
    )
    event_id = await change.create(chosen.account, draft)
    call.calendar_event_id, call.calendar_grant_id = event_id, chosen.account.connection_id


def is_pending(call: models.Call) -> bool:
    """A call awaiting confirmation: it holds its slot but has no calendar event and no
    conferencing link yet (docs/sales-floor.md, "Confirmation")."""
    return call.status == "pending"


def set_closer(call: models.Call, closer: TeamMember) -> None:
    call.closer_id, call.closer_name, call.closer_email = closer.id, closer.name, closer.email

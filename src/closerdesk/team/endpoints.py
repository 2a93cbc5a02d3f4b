"""``/v1/team``: members, calendar connections, busy time (docs/api.md, "Team")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response, status
from sqlalchemy import select

from closerdesk.auth.dependencies import AdminKey, ReadKey, WriteKey
from closerdesk.calendars import mirror, push
from closerdesk.config import Settings
from closerdesk.db import Session
from closerdesk.errors import (
    BusyBlockNotFound,
    CalendarAuthFailed,
    CalendarConnectionNotFound,
    CalendarGrantInUse,
    CalendarProviderError,
    CalendarProviderNotConfigured,
    MemberEmailTaken,
    MemberHasUpcomingCalls,
    MemberIdTaken,
    MemberNotFound,
    responses,
)
from closerdesk.kit.pagination import Cursor, Limit, paginate
from closerdesk.kit.schemas import Envelope, ListEnvelope, UTCDateTime
from closerdesk.models import CalendarConnection as ConnectionRow
from closerdesk.models import TeamMember as MemberRow
from closerdesk.providers import ProvidersDep
from closerdesk.team import calendar, service
from closerdesk.team.schemas import (
    BusyBlock,
    BusyBlockCreate,
    BusyInterval,
    CalendarAuthorization,
    CalendarConnect,
    CalendarConnection,
    Disconnected,
    Role,
    TeamMember,
    TeamMemberCreate,
    TeamMemberUpdate,
)

router = APIRouter(prefix="/v1/team", tags=["team"])


def _member(row: MemberRow, connection: ConnectionRow | None) -> TeamMember:
    member = TeamMember.model_validate(row)
    if connection is not None:
        member.calendar = CalendarConnection.model_validate(connection)
    return member


@router.get("", response_model=ListEnvelope[TeamMember])
async def list_team(
    session: Session,
    auth: ReadKey,
    role: Role | None = None,
    is_active: bool | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListEnvelope[TeamMember]:
    """Team members ordered by id, each with its calendar connection (or null)."""
    stmt = select(MemberRow).where(MemberRow.organization_id == auth.organization_id)
    if role is not None:
        stmt = stmt.where(MemberRow.role == role)
    if is_active is not None:
        stmt = stmt.where(MemberRow.is_active == is_active)
    page = await paginate(session, stmt, keys=[MemberRow.id], limit=limit, cursor=cursor)
    connections = await service.connections_of(
        session, auth.organization_id, [m.id for m in page.items]
    )
    return page.envelope([_member(m, connections.get(m.id)) for m in page.items])


@router.post(
    "",
    response_model=Envelope[TeamMember],
    status_code=status.HTTP_201_CREATED,
    responses=responses(MemberIdTaken, MemberEmailTaken),
)
async def create_member(
    body: TeamMemberCreate, session: Session, auth: AdminKey
) -> Envelope[TeamMember]:
    """Add a closer, setter or admin (admin scope). ``id`` may be your IdP's ``user_…`` id."""
    member = await service.create_member(session, auth.organization_id, body)
    return Envelope(data=_member(member, None))


@router.get(
    "/{member_id}", response_model=Envelope[TeamMember], responses=responses(MemberNotFound)
)
async def get_member(member_id: str, session: Session, auth: ReadKey) -> Envelope[TeamMember]:
    """One team member with its calendar connection."""
    member = await service.get_member(session, auth.organization_id, member_id)
    connections = await service.connections_of(session, auth.organization_id, [member.id])
    return Envelope(data=_member(member, connections.get(member.id)))


@router.patch(
    "/{member_id}",
    response_model=Envelope[TeamMember],
    responses=responses(MemberNotFound, MemberEmailTaken, MemberHasUpcomingCalls),
)
async def update_member(
    member_id: str, body: TeamMemberUpdate, session: Session, auth: AdminKey
) -> Envelope[TeamMember]:
    """Change a member (admin scope). A closer with upcoming calls cannot be deactivated or
    made a setter until they are reassigned (409 ``MEMBER_HAS_UPCOMING_CALLS``)."""
    member = await service.update_member(session, auth.organization_id, member_id, body)
    connections = await service.connections_of(session, auth.organization_id, [member.id])
    return Envelope(data=_member(member, connections.get(member.id)))


@router.put(
    "/{member_id}/calendar",
    response_model=Envelope[CalendarConnection] | Envelope[CalendarAuthorization],
    responses={
        202: {
            "model": Envelope[CalendarAuthorization],
            "description": "Google or Microsoft without a refresh token: open the URL to consent",
        },
        **responses(
            MemberNotFound,
            CalendarAuthFailed,
            CalendarProviderNotConfigured,
            MemberHasUpcomingCalls,
            CalendarGrantInUse,
            CalendarProviderError,
        ),
    },
)
async def connect_calendar(
    member_id: str,
    body: Annotated[CalendarConnect, Body()],
    session: Session,
    auth: AdminKey,
    providers: ProvidersDep,
    request: Request,
    response: Response,
) -> Envelope[CalendarConnection] | Envelope[CalendarAuthorization]:
    """Connect the member's calendar (admin scope); reconnecting replaces it.

    ``builtin`` keeps events and busy blocks in closerdesk itself; ``caldav`` connects any
    CalDAV server; ``nylas`` a Nylas v3 grant; ``google`` and ``microsoft`` a Google or
    Microsoft 365 calendar. Credentials are checked first (400 ``CALENDAR_AUTH_FAILED`` with
    the provider's reason; 502 ``CALENDAR_PROVIDER_ERROR`` when it does not answer). Google or
    Microsoft without a ``refresh_token`` answer **202** with an ``authorization_url``: the
    member consents there and the provider returns to ``GET /oauth/{provider}/callback``,
    which saves the connection. Moving a member with upcoming calls to another provider or
    calendar answers 409 ``MEMBER_HAS_UPCOMING_CALLS`` (their events live on the current one);
    new credentials for the same calendar are always accepted. The answer never contains a
    credential; an external calendar's mirror is ``pending`` until the first sync
    (``POST /v1/team/{id}/calendar/sync`` runs one now)."""
    await service.get_member(session, auth.organization_id, member_id)  # 404 first
    if calendar.needs_consent(body):
        await calendar.check_can_move(session, auth.organization_id, member_id, body.provider)
    await session.commit()  # no transaction (on SQLite, no write lock) over the network
    settings: Settings = request.app.state.settings
    if calendar.needs_consent(body):
        consent = calendar.begin_authorization(
            settings, providers.secrets, auth.organization_id, member_id, body
        )
        response.status_code = status.HTTP_202_ACCEPTED
        return Envelope(data=consent)
    account = await calendar.verify_calendar(
        session, providers, auth.organization_id, member_id, body
    )
    connection = await calendar.save_calendar(
        session, providers.secrets, auth.organization_id, member_id, account
    )
    return Envelope(data=CalendarConnection.model_validate(connection))


@router.get(
    "/{member_id}/calendar",
    response_model=Envelope[CalendarConnection],
    responses=responses(MemberNotFound, CalendarConnectionNotFound),
)
async def get_calendar(
    member_id: str, session: Session, auth: ReadKey
) -> Envelope[CalendarConnection]:
    """The member's calendar connection: provider, ``status`` (``invalid_reason``), and how
    fresh its busy mirror is (``sync_status``, ``last_synced_at``, ``sync_error``)."""
    connection = await calendar.get_calendar(session, auth.organization_id, member_id)
    return Envelope(data=CalendarConnection.model_validate(connection))


@router.post(
    "/{member_id}/calendar/sync",
    response_model=Envelope[CalendarConnection],
    responses=responses(MemberNotFound, CalendarConnectionNotFound),
)
async def sync_calendar(
    member_id: str,
    session: Session,
    auth: AdminKey,
    providers: ProvidersDep,
    request: Request,
) -> Envelope[CalendarConnection]:
    """Sync the busy mirror of the member's external calendar now (admin scope) instead of
    waiting for the worker; answers the connection afterwards. A failed sync answers 200 with
    ``sync_status: "failed"`` and ``sync_error``; a refusal of the credentials turns the
    connection ``invalid``. A sync already running elsewhere is not started twice."""
    connection = await calendar.get_calendar(session, auth.organization_id, member_id)
    await session.commit()  # the sync runs its own short transactions
    settings: Settings = request.app.state.settings
    await mirror.sync_now(request.app.state.database, providers, settings, connection.id)
    connection = await calendar.get_calendar(session, auth.organization_id, member_id)
    await session.refresh(connection)
    return Envelope(data=CalendarConnection.model_validate(connection))


@router.delete(
    "/{member_id}/calendar",
    response_model=Envelope[Disconnected],
    responses=responses(MemberNotFound, CalendarConnectionNotFound, MemberHasUpcomingCalls),
)
async def disconnect_calendar(
    member_id: str, session: Session, auth: AdminKey, providers: ProvidersDep
) -> Envelope[Disconnected]:
    """Disconnect the member's calendar (admin scope): the member can no longer receive calls.
    A member with upcoming calls answers 409 ``MEMBER_HAS_UPCOMING_CALLS``. A Google or
    Microsoft push channel is stopped after the change commits."""
    stopped = await calendar.disconnect_calendar(
        session, providers.secrets, auth.organization_id, member_id
    )
    await session.commit()
    if stopped is not None:
        await push.stop_channel(providers, session, *stopped)
    return Envelope(data=Disconnected(member_id=member_id, disconnected=True))


@router.get(
    "/{member_id}/busy",
    response_model=Envelope[list[BusyInterval]],
    responses=responses(MemberNotFound),
)
async def get_busy(
    member_id: str,
    session: Session,
    auth: ReadKey,
    start: Annotated[UTCDateTime, Query()],
    end: Annotated[UTCDateTime, Query()],
) -> Envelope[list[BusyInterval]]:
    """Merged busy intervals in ``[start, end)`` (at most 92 days): calls and calendar busy
    (an external calendar's from closerdesk's mirror; see ``last_synced_at``)."""
    spans = await service.busy_intervals(session, auth.organization_id, member_id, start, end)
    return Envelope(data=[BusyInterval(start=s.start, end=s.end) for s in spans])


@router.get(
    "/{member_id}/busy-blocks",
    response_model=Envelope[list[BusyBlock]],
    responses=responses(MemberNotFound),
)
async def list_busy_blocks(
    member_id: str, session: Session, auth: ReadKey
) -> Envelope[list[BusyBlock]]:
    """The member's busy blocks (time off), by start."""
    blocks = await service.list_busy_blocks(session, auth.organization_id, member_id)
    return Envelope(data=[BusyBlock.model_validate(b) for b in blocks])


@router.post(
    "/{member_id}/busy-blocks",
    response_model=Envelope[BusyBlock],
    status_code=status.HTTP_201_CREATED,
    responses=responses(MemberNotFound),
)
async def add_busy_block(
    member_id: str, body: BusyBlockCreate, session: Session, auth: WriteKey
) -> Envelope[BusyBlock]:
    """Block time off on the member's calendar: busy for conflict checks and slots."""
    block = await service.add_busy_block(session, auth.organization_id, member_id, body)
    return Envelope(data=BusyBlock.model_validate(block))


@router.delete(
    "/{member_id}/busy-blocks/{block_id}",
    response_model=Envelope[dict[str, bool]],
    responses=responses(MemberNotFound, BusyBlockNotFound),
)
async def delete_busy_block(
    member_id: str, block_id: str, session: Session, auth: WriteKey
) -> Envelope[dict[str, bool]]:
    """Remove a busy block."""
    await service.delete_busy_block(session, auth.organization_id, member_id, block_id)
    return Envelope(data={"deleted": True})

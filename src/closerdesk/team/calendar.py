"""A member's calendar connection: check, save, OAuth consent, disconnect (``docs/calendars.md``).

Connecting never holds a transaction while a provider is asked: the endpoint ends the request's
transaction, ``verify_calendar`` talks to the provider, and ``save_calendar`` writes the
verified account in a short one. Google and Microsoft without a refresh token go through the
OAuth consent instead (``begin_authorization`` → the provider → ``finish_authorization``).
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars import oauth, push
from closerdesk.calendars import repository as calendars_repository
from closerdesk.calendars.accounts import account_of
from closerdesk.calendars.credentials import seal_credentials
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    ProviderNotConfigured,
    PushChannel,
)
from closerdesk.calls import repository as calls_repository
from closerdesk.config import Settings
from closerdesk.errors import (
    CalendarAuthFailed,
    CalendarConnectionNotFound,
    CalendarGrantInUse,
    CalendarProviderError,
    CalendarProviderNotConfigured,
    MemberHasUpcomingCalls,
    MemberNotFound,
    OAuthStateInvalid,
)
from closerdesk.kit.ids import new_id
from closerdesk.kit.secrets import SecretBox
from closerdesk.models import CalendarBusy, CalendarConnection
from closerdesk.providers import Providers
from closerdesk.team.schemas import (
    CalDavCalendarConnect,
    CalendarAuthorization,
    CalendarConnect,
    GoogleCalendarConnect,
    MicrosoftCalendarConnect,
    NylasCalendarConnect,
)
from closerdesk.team.service import get_member, has_upcoming_calls


def needs_consent(body: CalendarConnect) -> bool:
    """Google or Microsoft without a refresh token: the member must consent first."""
    return (
        isinstance(body, GoogleCalendarConnect | MicrosoftCalendarConnect)
        and body.refresh_token is None
    )


async def check_can_move(
    session: AsyncSession, organization_id: str, member_id: str, provider: str
) -> None:
    """Before a consent: ``MemberHasUpcomingCalls`` (409) when the member would move to
    another provider while upcoming calls' events live on the current one (checked again,
    with the calendar, when the consent comes back)."""
    connection = await calendars_repository.get_connection(session, organization_id, member_id)
    if (
        connection is not None
        and connection.provider != provider
        and await has_upcoming_calls(session, organization_id, member_id)
    ):
        raise MemberHasUpcomingCalls()


def begin_authorization(
    settings: Settings, box: SecretBox, organization_id: str, member_id: str, body: CalendarConnect
) -> CalendarAuthorization:
    """The consent URL for ``body`` (Google or Microsoft; RFC 6749 authorization code with
    PKCE, the request sealed in ``state``). Raises ``CalendarProviderNotConfigured`` (400) when
    closerdesk has no OAuth client for the provider."""
    try:
        app = oauth.oauth_app(settings, body.provider)
    except ProviderNotConfigured as exc:
        raise CalendarProviderNotConfigured(str(exc)) from exc
    request = {
        "organization_id": organization_id,
        "member_id": member_id,
        "calendar_id": _calendar_id(body, member_id),
    } | _credentials(body)
    started = oauth.begin(app, box, settings, request)
    return CalendarAuthorization(
        member_id=member_id,
        provider=app.provider,
        authorization_url=started.url,
        expires_at=started.expires_at,
    )


async def finish_authorization(
    session: AsyncSession,
    providers: Providers,
    settings: Settings,
    provider: str,
    *,
    code: str | None,
    state: str | None,
    error: str | None,
    error_description: str | None,
) -> CalendarConnection:
    """``GET /oauth/{provider}/callback``: check ``state``, trade the code for a refresh token,
    verify the calendar and save the connection (call it outside a transaction).

    Raises ``OAuthStateInvalid`` (400: no, forged or expired state), ``CalendarAuthFailed``
    (400: consent refused, code rejected), ``CalendarProviderNotConfigured`` (400),
    ``CalendarProviderError`` (502), ``MemberNotFound`` (404: the member was removed since).
    """
    if not state:
        raise OAuthStateInvalid("The callback has no state.")
    try:
        request = oauth.open_state(providers.secrets, settings, provider, state)
        app = oauth.oauth_app(settings, provider)
    except oauth.InvalidState as exc:
        raise OAuthStateInvalid(f"The callback's state is not valid: {exc}.") from exc
    except ProviderNotConfigured as exc:
        raise CalendarProviderNotConfigured(str(exc)) from exc
    if error is not None:
        raise CalendarAuthFailed(f"The member did not grant access ({error}: {error_description})")
    if not code:
        raise CalendarAuthFailed("The provider returned no authorization code.")
    http = oauth.token_http(settings)
    try:
        tokens = await oauth.exchange_code(http, app, settings, code, request["verifier"])
    except CalendarAuthError as exc:
        raise CalendarAuthFailed(str(exc)) from exc
    except CalendarError as exc:
        raise CalendarProviderError(f"The token endpoint did not answer: {exc}") from exc
    finally:
        await http.aclose()
    if tokens.refresh_token is None:
        raise CalendarAuthFailed(f"{provider} issued no refresh token; connect again.")
    organization_id, member_id = request["organization_id"], request["member_id"]
    await get_member(session, organization_id, member_id)  # 404 when removed meanwhile
    await session.commit()
    credentials = {"refresh_token": tokens.refresh_token}
    if request.get("conferencing"):
        credentials["conferencing"] = request["conferencing"]
    draft = CalendarAccount(
        connection_id="",
        organization_id=organization_id,
        member_id=member_id,
        provider=provider,
        calendar_id=request.get("calendar_id", ""),
        credentials=credentials,
    )
    account = await verify_account(session, providers, draft)
    return await save_calendar(session, providers.secrets, organization_id, member_id, account)


async def verify_calendar(
    session: AsyncSession,
    providers: Providers,
    organization_id: str,
    member_id: str,
    body: CalendarConnect,
) -> CalendarAccount:
    """Ask the provider to check the credentials and find the calendar; touches no table.

    Call it outside any transaction (it waits on the network). Raises ``CalendarAuthFailed``
    (400, with the provider's reason), ``CalendarProviderError`` (502).
    """
    draft = CalendarAccount(
        connection_id="",
        organization_id=organization_id,
        member_id=member_id,
        provider=body.provider,
        calendar_id=_calendar_id(body, member_id),
        credentials=_credentials(body),
    )
    return await verify_account(session, providers, draft)


async def verify_account(
    session: AsyncSession, providers: Providers, draft: CalendarAccount
) -> CalendarAccount:
    """``draft`` checked by its provider, with the calendar it resolved. Raises
    ``CalendarAuthFailed`` (400), ``CalendarProviderNotConfigured`` (400),
    ``CalendarProviderError`` (502)."""
    try:
        return await providers.calendars(session, draft.provider).connect(draft)
    except ProviderNotConfigured as exc:
        raise CalendarProviderNotConfigured(str(exc)) from exc
    except CalendarAuthError as exc:
        raise CalendarAuthFailed(str(exc)) from exc
    except CalendarError as exc:
        raise CalendarProviderError(f"The calendar provider did not answer: {exc}") from exc


async def save_calendar(
    session: AsyncSession,
    box: SecretBox,
    organization_id: str,
    member_id: str,
    account: CalendarAccount,
) -> CalendarConnection:
    """Store the member's connection to the verified ``account`` (``docs/calendars.md``).

    Reconnecting the same provider replaces the credentials and calendar, makes the connection
    ``valid`` again and starts its mirror afresh (idempotent for ``builtin``); another provider
    replaces the connection. The credentials are stored sealed with ``box``. Raises
    ``MemberNotFound`` (404), ``CalendarGrantInUse`` (409: another member's Nylas grant) and
    ``MemberHasUpcomingCalls`` (409: another provider or calendar while the member has upcoming
    calls, whose events live on the current one; the member row is locked, as bookings of the
    member are).
    """
    member = await calls_repository.get_member(session, organization_id, member_id, lock=True)
    if member is None:
        raise MemberNotFound()
    connection = await calendars_repository.get_connection(session, organization_id, member.id)
    moves_calendar = connection is not None and (
        connection.provider != account.provider or connection.calendar_id != account.calendar_id
    )
    if moves_calendar and await has_upcoming_calls(session, organization_id, member.id):
        # Their events live on the current calendar (as for DELETE): reassign or cancel first.
        raise MemberHasUpcomingCalls()
    grant = account.credentials.get("grant_id")
    if grant is not None and await _grant_in_use(
        session, account.provider, grant, organization_id, member.id
    ):
        # One Nylas application key reaches every grant: a grant is one member's, in one
        # organization, or another tenant could read and write that closer's calendar.
        raise CalendarGrantInUse()
    if connection is not None and connection.provider != account.provider:
        await session.delete(connection)
        await session.flush()
        connection = None
    external = account.provider != "builtin"
    if connection is None:
        connection_id = new_id("cal")
        connection = CalendarConnection(
            id=connection_id,
            organization_id=organization_id,
            member_id=member.id,
            provider=account.provider,
            provider_grant_id=account.credentials.get("grant_id", connection_id),
        )
        session.add(connection)
    elif external:
        # Maybe another calendar now: its mirror starts again from nothing.
        await session.execute(
            delete(CalendarBusy).where(CalendarBusy.connection_id == connection.id)
        )
    connection.calendar_id = account.calendar_id
    connection.provider_grant_id = account.credentials.get("grant_id", connection.id)
    connection.credentials = seal_credentials(box, account.credentials)
    connection.status, connection.invalid_reason = "valid", None
    connection.sync_status = "pending" if external else "ok"
    connection.sync_state = connection.sync_error = None
    connection.last_synced_at = connection.mirror_until = connection.sync_lease_until = None
    connection.sync_requested_at = None
    connection.push_expires_at = None  # a channel for this calendar opens; the old one stops
    await session.flush()
    return connection


async def _grant_in_use(
    session: AsyncSession, provider: str, grant_id: str, organization_id: str, member_id: str
) -> bool:
    """Whether another member (of any organization) holds a connection to this grant."""
    found = await session.scalar(
        select(CalendarConnection.id)
        .where(
            CalendarConnection.provider == provider,
            CalendarConnection.provider_grant_id == grant_id,
            or_(
                CalendarConnection.organization_id != organization_id,
                CalendarConnection.member_id != member_id,
            ),
        )
        .limit(1)
    )
    return found is not None


def _credentials(body: CalendarConnect) -> dict[str, str]:
    """The provider's credentials from the request (plain values, encrypted when stored)."""
    values: dict[str, str | None]
    if isinstance(body, CalDavCalendarConnect):
        values = {
            "url": str(body.url),
            "username": body.username,
            "password": body.password.get_secret_value() if body.password else None,
            "calendar_url": str(body.calendar_url) if body.calendar_url else None,
        }
    elif isinstance(body, NylasCalendarConnect):
        values = {
            "grant_id": body.grant_id,
            "conferencing": body.conferencing,
            "conf_grant_id": body.conf_grant_id,
        }
    elif isinstance(body, GoogleCalendarConnect | MicrosoftCalendarConnect):
        token = body.refresh_token
        values = {
            "refresh_token": token.get_secret_value() if token else None,
            "conferencing": body.conferencing,
        }
    else:
        values = {}
    return {k: v for k, v in values.items() if v is not None}


def _calendar_id(body: CalendarConnect, member_id: str) -> str:
    """The calendar asked for: the provider resolves it on connect (``primary``…)."""
    if body.provider == "builtin":
        return f"builtin:{member_id}"
    if isinstance(body, NylasCalendarConnect | GoogleCalendarConnect | MicrosoftCalendarConnect):
        return body.calendar_id or ""
    return ""


async def get_calendar(
    session: AsyncSession, organization_id: str, member_id: str
) -> CalendarConnection:
    """Raises ``MemberNotFound`` or ``CalendarConnectionNotFound`` (404)."""
    member = await get_member(session, organization_id, member_id)
    connection = await calendars_repository.get_connection(session, organization_id, member.id)
    if connection is None:
        raise CalendarConnectionNotFound()
    return connection


async def disconnect_calendar(
    session: AsyncSession, box: SecretBox, organization_id: str, member_id: str
) -> tuple[CalendarAccount, PushChannel] | None:
    """Delete the member's connection (flushed, not committed). Returns its push channel and
    account when it had one, to stop after the commit (``push.stop_channel``).

    Raises ``MemberNotFound`` or ``CalendarConnectionNotFound`` (404), and
    ``MemberHasUpcomingCalls`` (409): their events live on this calendar, so reassign or cancel
    them first. The member row is locked, as bookings of the member are."""
    member = await calls_repository.get_member(session, organization_id, member_id, lock=True)
    if member is None:
        raise MemberNotFound()
    connection = await calendars_repository.get_connection(session, organization_id, member.id)
    if connection is None:
        raise CalendarConnectionNotFound()
    if await has_upcoming_calls(session, organization_id, member.id):
        raise MemberHasUpcomingCalls()
    channel = push.channel_of(connection)
    account = account_of(connection, box) if channel is not None else None
    await session.delete(connection)
    await session.flush()
    return (account, channel) if account is not None and channel is not None else None

"""``GET /oauth/{provider}/callback``: where Google and Microsoft return the member's browser.

The end of the consent started by ``PUT /v1/team/{id}/calendar`` without a refresh token
(``docs/calendars.md``, "Connecting Google"). No API key: the sealed ``state`` is what
authorizes the request (it names the organization and member, and expires).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.errors import (
    CalendarAuthFailed,
    CalendarProviderError,
    CalendarProviderNotConfigured,
    MemberHasUpcomingCalls,
    MemberNotFound,
    OAuthStateInvalid,
    responses,
)
from closerdesk.kit.schemas import Envelope
from closerdesk.providers import ProvidersDep
from closerdesk.team import calendar
from closerdesk.team.schemas import CalendarConnection

router = APIRouter(tags=["team"])


@router.get(
    "/oauth/{provider}/callback",
    response_model=Envelope[CalendarConnection],
    responses=responses(
        OAuthStateInvalid,
        CalendarAuthFailed,
        CalendarProviderNotConfigured,
        MemberNotFound,
        MemberHasUpcomingCalls,
        CalendarProviderError,
    ),
)
async def oauth_callback(
    provider: Literal["google", "microsoft"],
    providers: ProvidersDep,
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> Envelope[CalendarConnection]:
    """Finish connecting a Google or Microsoft calendar: the code is traded for a refresh
    token (stored encrypted), the calendar is checked, and the connection is saved ``valid``.

    400 ``OAUTH_STATE_INVALID`` (no, forged or expired ``state``: start again), 400
    ``CALENDAR_AUTH_FAILED`` (the member declined, or the code was refused)."""
    settings: Settings = request.app.state.settings
    database: Database = request.app.state.database
    # A GET, but it writes: a writer session (on SQLite, BEGIN IMMEDIATE, as for a PUT).
    async with database.writer() as session:
        connection = await calendar.finish_authorization(
            session,
            providers,
            settings,
            provider,
            code=code,
            state=state,
            error=error,
            error_description=error_description,
        )
        answer = CalendarConnection.model_validate(connection)
        await session.commit()
    return Envelope(data=answer)

"""The providers a request may use, chosen once at start-up and kept on ``app.state``.

Tests swap them (failure injection) without touching the services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.builtin import BuiltinCalendar
from closerdesk.calendars.caldav import CalDavCalendar
from closerdesk.calendars.credentials import RefreshTokenStore
from closerdesk.calendars.google import GoogleCalendar
from closerdesk.calendars.microsoft import MicrosoftCalendar
from closerdesk.calendars.nylas import NylasCalendar
from closerdesk.calendars.oauth import TokenSource
from closerdesk.calendars.provider import CalendarError, CalendarFactory, CalendarProvider
from closerdesk.conferencing.builtin import BuiltinConferencing
from closerdesk.conferencing.provider import ConferencingFactory, ConferencingProvider
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.secrets import SecretBox, secret_box


@dataclass(frozen=True)
class Providers:
    """The ports of a process: calendars and conferencing, and the ``secrets`` box that opens
    the calendars' stored credentials. ``cloud`` holds the cloud calendars' HTTP clients, closed
    by ``aclose``."""

    calendars: CalendarFactory
    conferencing: ConferencingFactory
    secrets: SecretBox
    cloud: CloudCalendars | None = None

    async def aclose(self) -> None:
        if self.cloud is not None:
            await self.cloud.aclose()


@dataclass(frozen=True)
class CloudCalendars:
    """One shared instance per cloud provider (each keeps its HTTP connections and, for the
    OAuth ones, the access tokens of its connections)."""

    google: GoogleCalendar
    microsoft: MicrosoftCalendar
    nylas: NylasCalendar
    rotated: RefreshTokenStore | None = None

    def by_name(self) -> dict[str, CalendarProvider]:
        return {"google": self.google, "microsoft": self.microsoft, "nylas": self.nylas}

    async def aclose(self) -> None:
        if self.rotated is not None:
            await self.rotated.aclose()
        for calendar in (self.google, self.microsoft, self.nylas):
            await calendar.aclose()


def cloud_calendars(settings: Settings, database: Database | None = None) -> CloudCalendars:
    """The Google, Microsoft and Nylas providers of this process. With ``database``, a refresh
    token a provider rotates is stored (``calendars/credentials.py``)."""
    rotated = RefreshTokenStore(database, secret_box(settings)) if database is not None else None

    return CloudCalendars(
        google=GoogleCalendar(
            settings, tokens=TokenSource.for_provider(settings, "google", rotated)
        ),
        microsoft=MicrosoftCalendar(
            settings, tokens=TokenSource.for_provider(settings, "microsoft", rotated)
        ),
        nylas=NylasCalendar(settings),
        rotated=rotated,
    )


def default_providers(settings: Settings, database: Database | None = None) -> Providers:
    def conferencing(session: AsyncSession) -> ConferencingProvider:
        return BuiltinConferencing(
            session,
            public_base_url=settings.public_base_url,
            room_base_url=settings.jitsi_base_url,
        )

    cloud = cloud_calendars(settings, database)
    return Providers(
        calendars=calendar_factory(settings, cloud),
        conferencing=conferencing,
        secrets=secret_box(settings),
        cloud=cloud,
    )


def calendar_factory(settings: Settings, cloud: CloudCalendars | None = None) -> CalendarFactory:
    """The calendar providers of this build, by name (``docs/calendars.md``): ``builtin``
    (bound to the session), ``caldav`` (one shared instance; each call opens its own
    connection in a worker thread) and, given ``cloud``, ``google``, ``microsoft`` and
    ``nylas``. An unknown name raises ``CalendarError``."""
    shared: dict[str, CalendarProvider] = {
        "caldav": CalDavCalendar(timeout=settings.calendar_timeout_seconds),
        **(cloud.by_name() if cloud is not None else {}),
    }

    def calendars(session: AsyncSession, provider: str) -> CalendarProvider:
        if provider == "builtin":
            return BuiltinCalendar(session)
        found = shared.get(provider)
        if found is None:
            raise CalendarError(f"calendar provider '{provider}' is not available")
        return found

    return calendars


async def get_providers(request: Request) -> Providers:
    """The process's providers. A coroutine: FastAPI runs a plain ``def`` dependency in its
    thread pool, a hop every write request would pay for one attribute read."""
    providers: Providers = request.app.state.providers
    return providers


ProvidersDep = Annotated[Providers, Depends(get_providers)]

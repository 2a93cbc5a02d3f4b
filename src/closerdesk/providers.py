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
from closerdesk.calendars.provider import CalendarError, CalendarFactory, CalendarProvider
from closerdesk.conferencing.builtin import BuiltinConferencing
from closerdesk.conferencing.provider import ConferencingFactory, ConferencingProvider
from closerdesk.config import Settings
from closerdesk.kit.secrets import SecretBox, secret_box


@dataclass(frozen=True)
class Providers:
    """The ports of a process: calendars and conferencing, and the ``secrets`` box that opens
    the calendars' stored credentials."""

    calendars: CalendarFactory
    conferencing: ConferencingFactory
    secrets: SecretBox


def default_providers(settings: Settings) -> Providers:
    def conferencing(session: AsyncSession) -> ConferencingProvider:
        return BuiltinConferencing(
            session,
            public_base_url=settings.public_base_url,
            room_base_url=settings.jitsi_base_url,
        )

    return Providers(
        calendars=calendar_factory(settings),
        conferencing=conferencing,
        secrets=secret_box(settings),
    )


def calendar_factory(settings: Settings) -> CalendarFactory:
    """The calendar providers of this build, by name (``docs/calendars.md``): ``builtin``
    (bound to the session) and ``caldav`` (one shared instance; each call opens its own
    connection in a worker thread). An unknown name raises ``CalendarError``."""
    caldav = CalDavCalendar(timeout=settings.calendar_timeout_seconds)

    def calendars(session: AsyncSession, provider: str) -> CalendarProvider:
        if provider == "builtin":
            return BuiltinCalendar(session)
        if provider == "caldav":
            return caldav
        raise CalendarError(f"calendar provider '{provider}' is not available")

    return calendars


def get_providers(request: Request) -> Providers:
    providers: Providers = request.app.state.providers
    return providers


ProvidersDep = Annotated[Providers, Depends(get_providers)]

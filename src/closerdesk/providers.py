"""The providers a request may use, chosen once at start-up and kept on ``app.state``.

Tests swap them (failure injection) without touching the services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.builtin import default_calendar_factory
from closerdesk.calendars.provider import CalendarFactory
from closerdesk.conferencing.builtin import BuiltinConferencing
from closerdesk.conferencing.provider import ConferencingFactory, ConferencingProvider
from closerdesk.config import Settings


@dataclass(frozen=True)
class Providers:
    calendars: CalendarFactory
    conferencing: ConferencingFactory


def default_providers(settings: Settings) -> Providers:
    def conferencing(session: AsyncSession) -> ConferencingProvider:
        return BuiltinConferencing(
            session,
            public_base_url=settings.public_base_url,
            room_base_url=settings.jitsi_base_url,
        )

    return Providers(calendars=default_calendar_factory, conferencing=conferencing)


def get_providers(request: Request) -> Providers:
    providers: Providers = request.app.state.providers
    return providers


ProvidersDep = Annotated[Providers, Depends(get_providers)]

"""A connection row as the plain ``CalendarAccount`` a provider works on."""

from __future__ import annotations

from closerdesk.calendars.provider import CalendarAccount
from closerdesk.models import CalendarConnection


def account_of(connection: CalendarConnection) -> CalendarAccount:
    """The provider's view of ``connection``: ids, calendar and decrypted credentials."""
    return CalendarAccount(
        connection_id=connection.id,
        organization_id=connection.organization_id,
        member_id=connection.member_id,
        provider=connection.provider,
        calendar_id=connection.calendar_id,
        credentials=dict(connection.credentials or {}),
    )

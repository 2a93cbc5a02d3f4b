"""A connection row as the plain ``CalendarAccount`` a provider works on."""

from __future__ import annotations

from closerdesk.calendars.credentials import open_credentials
from closerdesk.calendars.provider import CalendarAccount
from closerdesk.kit.secrets import SecretBox
from closerdesk.models import CalendarConnection


def account_of(connection: CalendarConnection, box: SecretBox) -> CalendarAccount:
    """The provider's view of ``connection``: ids, calendar and its credentials opened with
    ``box`` (``calendars/credentials.py``). Raises ``UndecryptableSecret`` when no configured
    key opens them."""
    return CalendarAccount(
        connection_id=connection.id,
        organization_id=connection.organization_id,
        member_id=connection.member_id,
        provider=connection.provider,
        calendar_id=connection.calendar_id,
        credentials=open_credentials(box, connection),
    )

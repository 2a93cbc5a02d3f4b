"""Calendar credentials at rest: one Fernet token per connection (``kit/secrets.py``).

``calendar_connections.credentials`` holds the provider's credential map (CalDAV ``url``,
``username``, ``password``; an OAuth ``refresh_token``…) as a token of its JSON, or NULL when
the provider needs none (the built-in calendar). Nothing else reads or writes that column:
whoever builds a connection seals, whoever builds a provider's ``CalendarAccount`` opens.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.provider import CalendarAccount
from closerdesk.db import Database
from closerdesk.kit.secrets import Resealed, SecretBox, reseal_column
from closerdesk.models import CalendarConnection


def seal_credentials(box: SecretBox, credentials: Mapping[str, str]) -> str | None:
    """The value to store in ``CalendarConnection.credentials``: a token of ``credentials``
    under the first key, or None when there are none."""
    return box.encrypt_json(credentials) if credentials else None


def open_credentials(box: SecretBox, connection: CalendarConnection) -> dict[str, str]:
    """The connection's credential map in clear (``{}`` when none are stored).

    Raises ``UndecryptableSecret`` when no configured key opens the stored token."""
    if connection.credentials is None:
        return {}
    return box.decrypt_json(connection.credentials)


async def reseal_credentials(session: AsyncSession, box: SecretBox) -> Resealed:
    """Re-encrypt every stored credential map under the first key (``closerdesk keys
    rotate``). Raises ``UndecryptableSecret`` naming the connection."""
    return await reseal_column(
        session, box, CalendarConnection, "credentials", "the calendar credentials"
    )


async def store_refresh_token(
    database: Database, box: SecretBox, account: CalendarAccount, refresh_token: str
) -> None:
    """Keep a refresh token the provider rotated (Microsoft replaces it on every refresh).

    Written in a transaction of its own, and only while the connection still holds the token
    the rotation started from: a calendar connected again meanwhile keeps its new credentials.
    """
    async with database.writer() as session:
        connection = await session.get(CalendarConnection, account.connection_id)
        if connection is None:
            return
        current = open_credentials(box, connection)
        if current.get("refresh_token") != account.credentials.get("refresh_token"):
            return
        connection.credentials = seal_credentials(box, current | {"refresh_token": refresh_token})
        await session.commit()

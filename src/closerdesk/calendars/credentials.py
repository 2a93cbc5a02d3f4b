"""Calendar credentials at rest: one Fernet token per connection (``kit/secrets.py``).

``calendar_connections.credentials`` holds the provider's credential map (CalDAV ``url``,
``username``, ``password``; an OAuth ``refresh_token``…) as a token of its JSON, or NULL when
the provider needs none (the built-in calendar). Nothing else reads or writes that column:
whoever builds a connection seals, whoever builds a provider's ``CalendarAccount`` opens.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

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

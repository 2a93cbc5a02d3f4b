"""Calendar credentials at rest: one Fernet token per connection (``kit/secrets.py``).

``calendar_connections.credentials`` holds the provider's credential map (CalDAV ``url``,
``username``, ``password``; an OAuth ``refresh_token``…) as a token of its JSON, or NULL when
the provider needs none (the built-in calendar). Nothing else reads or writes that column:
whoever builds a connection seals, whoever builds a provider's ``CalendarAccount`` opens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.provider import CalendarAccount
from closerdesk.db import Database
from closerdesk.kit.secrets import Resealed, SecretBox, reseal_column
from closerdesk.models import CalendarConnection

log = structlog.get_logger(__name__)


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


class RefreshTokenStore:
    """Keeps the refresh tokens a provider rotates (Microsoft replaces it on every refresh):
    the ``on_rotate`` hook of ``calendars/oauth.TokenSource``.

    A refresh happens in the middle of a request, often inside its transaction (on SQLite,
    holding the single write lock), so the token is written by a task of its own that waits
    for its turn; ``aclose`` waits for the pending ones. A write is skipped when the connection
    no longer holds the token the rotation started from (connected again meanwhile). If the
    process dies first, the previous refresh token stays stored, and Microsoft keeps it valid
    until it expires.
    """

    def __init__(self, database: Database, box: SecretBox) -> None:
        self.database = database
        self.box = box
        self._pending: set[asyncio.Task[None]] = set()

    async def __call__(self, account: CalendarAccount, refresh_token: str) -> None:
        task = asyncio.create_task(self._store(account, refresh_token))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def aclose(self) -> None:
        """Wait for the writes still pending."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _store(self, account: CalendarAccount, refresh_token: str) -> None:
        try:
            async with self.database.writer() as session:
                connection = await session.get(CalendarConnection, account.connection_id)
                if connection is None:
                    return
                current = open_credentials(self.box, connection)
                if current.get("refresh_token") != account.credentials.get("refresh_token"):
                    return
                rotated = current | {"refresh_token": refresh_token}
                connection.credentials = seal_credentials(self.box, rotated)
                await session.commit()
        except Exception:  # the old token still works: never let this break anything
            log.exception(
                "calendar.refresh_token_store_failed", connection_id=account.connection_id
            )

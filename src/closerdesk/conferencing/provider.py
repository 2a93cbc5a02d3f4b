"""The conferencing provider Protocol: every link handed out can be revoked (docs/api.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession


class ConferencingProvider(Protocol):
    name: str

    async def issue_link(self, organization_id: str, call_id: str) -> str:
        """A new meeting URL for the call."""
        ...

    async def revoke_link(self, organization_id: str, url: str) -> None:
        """Make ``url`` stop working. Revoking an unknown or revoked link is not an error."""
        ...

    async def point_link(self, organization_id: str, url: str, room_url: str) -> None:
        """Make the live link ``url`` lead to ``room_url`` (the calendar provider's room)."""
        ...


ConferencingFactory = Callable[[AsyncSession], ConferencingProvider]

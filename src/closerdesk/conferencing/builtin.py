"""Built-in conferencing: ``{public_base_url}/meet/{token}`` redirects to a Jitsi room, or to
the calendar provider's own room (Google Meet, Teams) once the call's event has one.

The link is ours, so it can be revoked: a revoked token answers 410 Gone (docs/api.md).
"""

from __future__ import annotations

import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.errors import LinkRevoked, MeetingLinkNotFound
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import ConferencingLink

MEET_PATH = "/meet/"


class BuiltinConferencing:
    name = "builtin"

    def __init__(self, session: AsyncSession, *, public_base_url: str, room_base_url: str) -> None:
        self.session = session
        self.public_base_url = public_base_url.rstrip("/")
        self.room_base_url = room_base_url.rstrip("/")

    async def issue_link(self, organization_id: str, call_id: str) -> str:
        token = secrets.token_urlsafe(18)
        room = f"closerdesk-{secrets.token_hex(8)}"
        self.session.add(
            ConferencingLink(
                id=new_id("conf"),
                organization_id=organization_id,
                call_id=call_id,
                token=token,
                room_url=f"{self.room_base_url}/{room}",
            )
        )
        await self.session.flush()
        return f"{self.public_base_url}{MEET_PATH}{token}"

    async def revoke_link(self, organization_id: str, url: str) -> None:
        await self._change_live(organization_id, url, revoked_at=utcnow())

    async def point_link(self, organization_id: str, url: str, room_url: str) -> None:
        """Send a live link to ``room_url`` (a provider's own room: Google Meet, Teams)."""
        await self._change_live(organization_id, url, room_url=room_url)

    async def _change_live(self, organization_id: str, url: str, **values: object) -> None:
        """Update the live (not revoked) link behind ``url``; an unknown one is left alone."""
        _, sep, token = url.rpartition(MEET_PATH)
        if not sep or not token:
            return
        await self.session.execute(
            update(ConferencingLink)
            .where(
                ConferencingLink.organization_id == organization_id,
                ConferencingLink.token == token,
                ConferencingLink.revoked_at.is_(None),
            )
            .values(**values)
        )


async def resolve_meeting(session: AsyncSession, token: str) -> str:
    """The room URL behind a live token.

    Raises ``MeetingLinkNotFound`` (404) for an unknown token, ``LinkRevoked`` (410) once revoked.
    """
    link = await session.scalar(select(ConferencingLink).where(ConferencingLink.token == token))
    if link is None:
        raise MeetingLinkNotFound()
    if link.revoked_at is not None:
        raise LinkRevoked()
    return link.room_url

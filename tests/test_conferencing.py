"""closerdesk's own conferencing links (``closerdesk.conferencing.builtin``): a change names one
live link of one organization (docs/api.md, "Conferencing links")."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.conferencing.builtin import BuiltinConferencing
from closerdesk.models import ConferencingLink
from tests.calls.helpers import future
from tests.factories import Org, create_call, create_lead, create_member


def _conferencing(session: AsyncSession) -> BuiltinConferencing:
    return BuiltinConferencing(
        session, public_base_url="http://closerdesk.test", room_base_url="http://rooms.test"
    )


async def _link(session: AsyncSession, org: Org) -> tuple[str, str]:
    """A live link of a new call of ``org``: its URL and its row's id."""
    call = await create_call(
        session,
        org,
        lead=await create_lead(session, org),
        closer=await create_member(session, org),
        scheduled_at=future(days=2),
    )
    url = await _conferencing(session).issue_link(org.id, call.id)
    await session.commit()
    token = url.rpartition("/meet/")[2]
    link_id = await session.scalar(
        select(ConferencingLink.id).where(ConferencingLink.token == token)
    )
    assert link_id is not None
    return url, link_id


async def _state(session: AsyncSession, link_id: str) -> tuple[object, str]:
    """The link's ``revoked_at`` and ``room_url`` as committed."""
    await session.commit()
    row = (
        await session.execute(
            select(ConferencingLink.revoked_at, ConferencingLink.room_url).where(
                ConferencingLink.id == link_id
            )
        )
    ).one()
    return row[0], row[1]


async def test_another_organization_cannot_revoke_or_point_a_link(
    session: AsyncSession, org: Org, other_org: Org
) -> None:
    url, link_id = await _link(session, org)
    before = await _state(session, link_id)
    await _conferencing(session).revoke_link(other_org.id, url)
    await _conferencing(session).point_link(other_org.id, url, "https://meet.example/abc")
    assert await _state(session, link_id) == before
    assert before[0] is None


async def test_a_revoked_link_keeps_its_revocation_and_its_room(
    session: AsyncSession, org: Org
) -> None:
    url, link_id = await _link(session, org)
    await _conferencing(session).revoke_link(org.id, url)
    revoked = await _state(session, link_id)
    assert revoked[0] is not None
    await _conferencing(session).revoke_link(org.id, url)
    await _conferencing(session).point_link(org.id, url, "https://meet.example/abc")
    assert await _state(session, link_id) == revoked


async def test_a_link_the_session_holds_follows_its_change(session: AsyncSession, org: Org) -> None:
    """An UPDATE of a link also brings the copy the session already holds up to date (booking
    issues a link, then points it at a provider's room, in one session)."""
    url, link_id = await _link(session, org)
    held = await session.get(ConferencingLink, link_id)
    assert held is not None
    await _conferencing(session).point_link(org.id, url, "https://meet.example/abc")
    assert held.room_url == "https://meet.example/abc"
    await _conferencing(session).revoke_link(org.id, url)
    assert held.revoked_at is not None

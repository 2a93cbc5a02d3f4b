"""The SQL of round robin's counts (``closerdesk.booking_links.round_robin_counts_repository``):
what counts against a host's caps (docs/sales-floor.md, "Round-robin controls")."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.booking_links.round_robin_counts_repository import cap_starts
from closerdesk.db import Database
from closerdesk.kit.time import utcnow
from closerdesk.models import SlotReservation
from tests.calls.helpers import create_booking_link, future
from tests.factories import Org, create_call, create_lead, create_member


async def test_cap_starts_count_live_holds_but_the_one_being_booked(
    session: AsyncSession, database: Database, org: Org, other_org: Org
) -> None:
    """A live hold counts against its host's caps like a call, except the hold being booked
    (its call is about to count instead); expired (at ``expires_at`` itself too), consumed and
    out-of-range holds, and other organizations' holds, never do."""
    t0 = future(days=3).replace(minute=0, second=0, microsecond=0)
    now = utcnow()
    a, b = await create_member(session, org), await create_member(session, org)
    stranger = await create_member(session, other_org)
    consumer = await create_call(
        session, org, lead=await create_lead(session, org), closer=b, scheduled_at=future(days=9)
    )
    await session.commit()
    link = await create_booking_link(database, org, "bl_counts")
    other_link = await create_booking_link(database, other_org, "bl_counts_other")

    def hold(
        rid: str,
        member_id: str,
        start: datetime,
        *,
        expires_in: timedelta = timedelta(minutes=5),
        call_id: str | None = None,
        organization_id: str = org.id,
        link_id: str = link,
    ) -> SlotReservation:
        return SlotReservation(
            id=rid,
            organization_id=organization_id,
            booking_link_id=link_id,
            member_id=member_id,
            starts_at=start,
            ends_at=start + timedelta(minutes=30),
            expires_at=now + expires_in,
            call_id=call_id,
        )

    session.add_all(
        [
            hold("rsv_booked", a.id, t0),
            hold("rsv_a", a.id, t0 + timedelta(hours=1)),
            hold("rsv_b", b.id, t0 + timedelta(hours=2)),
            hold("rsv_expired", b.id, t0 + timedelta(hours=3), expires_in=-timedelta(seconds=1)),
            hold("rsv_expiring", b.id, t0 + timedelta(hours=5), expires_in=timedelta(0)),
            hold("rsv_consumed", b.id, t0 + timedelta(hours=4), call_id=consumer.id),
            hold("rsv_later", b.id, t0 + timedelta(days=2)),
            hold(
                "rsv_stranger",
                stranger.id,
                t0,
                organization_id=other_org.id,
                link_id=other_link,
            ),
        ]
    )
    await session.commit()
    starts = await cap_starts(
        session,
        org.id,
        [a.id, b.id],
        t0 - timedelta(hours=1),
        t0 + timedelta(days=1),
        now,
        exclude_reservation_id="rsv_booked",
    )
    assert {member: sorted(at) for member, at in starts.items()} == {
        a.id: [t0 + timedelta(hours=1)],
        b.id: [t0 + timedelta(hours=2)],
    }

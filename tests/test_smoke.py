from __future__ import annotations

from datetime import timedelta

import httpx

from closerdesk.kit.time import isoformat_z, utcnow
from tests.factories import Org, create_lead, create_member


async def test_book_get_reassign(client: httpx.AsyncClient, org: Org, session) -> None:  # type: ignore[no-untyped-def]
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    start = isoformat_z((utcnow() + timedelta(days=3)).replace(microsecond=0))
    r = await client.post(
        "/v1/calls",
        headers=org.headers,
        json={
            "lead_id": lead.id,
            "scheduled_at": start,
            "duration_minutes": 45,
            "closer_id": closer.id,
        },
    )
    assert r.status_code == 201, r.text
    call = r.json()["data"]
    r = await client.get(f"/v1/calls/{call['id']}", headers=org.headers)
    assert r.status_code == 200
    r = await client.post(
        f"/v1/calls/{call['id']}/reassign-closer",
        headers=org.headers,
        json={"new_closer_id": other.id},
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["new_closer_id"] == other.id
    assert r.json()["data"]["old_event_orphaned"] is False
    old = await client.get(call["conferencing_link"].replace("http://closerdesk.test", ""))
    assert old.status_code == 410

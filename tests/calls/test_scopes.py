"""Scopes on the Calls API: a ``read`` key reads, and gets 403 FORBIDDEN on every write."""

from __future__ import annotations

import httpx
import pytest

from closerdesk.db import Database
from tests.calls.helpers import error, future, get_call, iso, ok, past, webhooks
from tests.factories import Org, create_call, create_lead, create_member

WRITES = ["book", "patch", "outcome", "reassign", "reschedule", "cancel"]


async def _write(client: httpx.AsyncClient, route: str, headers: dict, ids: dict) -> httpx.Response:
    call = ids["call"]
    if route == "book":
        return await client.post(
            "/v1/calls",
            headers=headers,
            json={
                "lead_id": ids["lead"],
                "scheduled_at": iso(future(days=4)),
                "duration_minutes": 30,
                "closer_id": ids["closer"],
            },
        )
    if route == "patch":
        return await client.patch(f"/v1/calls/{call}", headers=headers, json={"notes": "x"})
    if route == "outcome":
        return await client.post(
            f"/v1/calls/{ids['past_call']}/outcome", headers=headers, json={"status": "shown"}
        )
    if route == "reassign":
        return await client.post(
            f"/v1/calls/{call}/reassign-closer",
            headers=headers,
            json={"new_closer_id": ids["other"]},
        )
    if route == "reschedule":
        return await client.post(
            f"/v1/calls/{call}/reschedule",
            headers=headers,
            json={"scheduled_at": iso(future(days=5))},
        )
    assert route == "cancel"
    return await client.post(f"/v1/calls/{call}/cancel", headers=headers, json={})


@pytest.fixture
async def ids(org: Org, session) -> dict:  # type: ignore[no-untyped-def]
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=closer)
    past_call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=past(days=1))
    return {
        "closer": closer.id,
        "other": other.id,
        "lead": lead.id,
        "call": call.id,
        "past_call": past_call.id,
    }


@pytest.mark.parametrize("route", WRITES)
async def test_read_key_is_forbidden_on_writes(
    client: httpx.AsyncClient, org: Org, database: Database, ids: dict, route: str
) -> None:
    before = await get_call(client, org, ids["call"])
    before_past = await get_call(client, org, ids["past_call"])
    r = await _write(client, route, org.auth("read"), ids)
    error(r, 403, "FORBIDDEN")
    assert await get_call(client, org, ids["call"]) == before
    assert await get_call(client, org, ids["past_call"]) == before_past
    for event_type in ("call.booked", "call.updated", "call.outcome_set", "call.cancelled"):
        assert await webhooks(database, org, event_type) == []


@pytest.mark.parametrize("route", WRITES)
async def test_no_key_is_unauthorized_on_writes(
    client: httpx.AsyncClient, ids: dict, route: str
) -> None:
    error(await _write(client, route, {}, ids), 401, "UNAUTHORIZED")
    bad = {"Authorization": "Bearer cdk_notarealkey"}
    error(await _write(client, route, bad, ids), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("route", WRITES)
async def test_write_key_may_write(
    client: httpx.AsyncClient, org: Org, ids: dict, route: str
) -> None:
    r = await _write(client, route, org.auth("write"), ids)
    ok(r, 201 if route == "book" else 200)


async def test_read_key_reads(client: httpx.AsyncClient, org: Org, ids: dict) -> None:
    read = org.auth("read")
    ok(await client.get(f"/v1/calls/{ids['call']}", headers=read))
    ok(await client.get(f"/v1/calls/{ids['call']}/history", headers=read))
    assert len(ok(await client.get("/v1/calls", headers=read))) == 2

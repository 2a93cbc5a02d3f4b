"""Check-then-insert races on unique keys answer 409 (or reuse the winner), never 500."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from closerdesk.db import Database
from closerdesk.models import Lead, TeamMember
from tests.factories import Org

RACERS = 6


async def _race(client: httpx.AsyncClient, org: Org, path: str, bodies: list[dict]) -> list[int]:  # type: ignore[type-arg]
    responses = await asyncio.gather(
        *(client.post(path, headers=org.headers, json=body) for body in bodies)
    )
    for r in responses:
        assert r.status_code < 500, r.text
    return sorted(r.status_code for r in responses)


async def test_same_lead_email_at_once(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    body = {"email": "race@example.com", "full_name": "Race"}
    codes = await _race(client, org, "/v1/leads", [body] * RACERS)
    assert codes == [201] + [409] * (RACERS - 1)
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Lead)) == 1


async def test_same_member_id_and_email_at_once(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    same_id = [
        {"id": "user_race", "name": "R", "email": f"r{i}@example.com", "role": "closer"}
        for i in range(RACERS)
    ]
    assert await _race(client, org, "/v1/team", same_id) == [201] + [409] * (RACERS - 1)
    same_email = [
        {"id": f"user_mail{i}", "name": "M", "email": "m@example.com", "role": "setter"}
        for i in range(RACERS)
    ]
    assert await _race(client, org, "/v1/team", same_email) == [201] + [409] * (RACERS - 1)
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(TeamMember)) == 2


async def test_inline_lead_of_simultaneous_bookings_is_one_lead(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    body = {"call_kind": "intent", "lead": {"email": "same@example.com", "full_name": "Same"}}
    assert await _race(client, org, "/v1/calls", [body] * RACERS) == [201] * RACERS
    async with database.reader() as s:
        assert await s.scalar(select(func.count()).select_from(Lead)) == 1

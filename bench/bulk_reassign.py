"""Benchmark: one real bulk reassign of ``--calls`` upcoming calls (default 100), on SQLite or
PostgreSQL, through the API in process (ASGI), built-in calendars and conferencing.

Not a test: it prints its figures. The database given is emptied (PostgreSQL: the public
schema dropped and recreated; SQLite: a fresh file) and migrated to head. A source closer holds
the calls (one an hour from two days ahead, each with its built-in event and live link); the
first run moves them to one named closer, the second spreads them back over ``--hosts``
closers with ``to: "auto"``; each call is its own transaction (docs/sales-floor.md, "Bulk
reassign"). A dry run of the same batch is timed too.

    .venv/bin/python bench/bulk_reassign.py [--database-url postgresql+asyncpg://…]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from closerdesk.app import create_app
from closerdesk.auth.service import create_organization
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.logs import configure_logging
from closerdesk.migrate import upgrade
from closerdesk.models import (
    CalendarConnection,
    CalendarEvent,
    Call,
    ConferencingLink,
    Lead,
    TeamMember,
)

BASE = "http://bench"


async def _reset(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


def _member(org_id: str, member_id: str) -> list[Any]:
    connection_id = new_id("cal")
    return [
        TeamMember(
            organization_id=org_id,
            id=member_id,
            name=member_id,
            email=f"{member_id}@example.com",
            role="closer",
            time_zone="UTC",
            is_active=True,
        ),
        CalendarConnection(
            id=connection_id,
            organization_id=org_id,
            member_id=member_id,
            provider="builtin",
            provider_grant_id=connection_id,
            calendar_id=f"builtin:{member_id}",
            status="valid",
            credentials=None,
        ),
    ]


async def _fill(database: Database, org_id: str, calls: int, hosts: int) -> None:
    async with database.writer() as session:
        rows: list[Any] = _member(org_id, "user_src") + _member(org_id, "user_one")
        for i in range(hosts):
            rows += _member(org_id, f"user_host{i}")
        # No ORM relationships to order the inserts: members first, then their calendars.
        session.add_all(rows[0::2])
        await session.flush()
        session.add_all(rows[1::2])
        await session.flush()
        lead = Lead(
            id=new_id("lead"),
            organization_id=org_id,
            email="lead@example.com",
            full_name="Lead",
            time_zone="UTC",
            status="new",
            metadata_={},
        )
        session.add(lead)
        await session.flush()
        source_calendar = rows[1]
        start = (utcnow() + timedelta(days=2)).replace(microsecond=0)
        for i in range(calls):
            call_id, event_id, token = new_id("call"), new_id("evt"), new_id("t").lower()
            at = start + timedelta(hours=i)
            session.add(
                CalendarEvent(
                    id=event_id,
                    organization_id=org_id,
                    connection_id=source_calendar.id,
                    call_id=call_id,
                    title="Call",
                    starts_at=at,
                    ends_at=at + timedelta(minutes=45),
                )
            )
            session.add(
                ConferencingLink(
                    id=new_id("conf"),
                    organization_id=org_id,
                    call_id=call_id,
                    token=token,
                    room_url=f"https://meet.example.test/{token}",
                )
            )
            session.add(
                Call(
                    id=call_id,
                    organization_id=org_id,
                    call_kind="booking",
                    status="scheduled",
                    lead_id=lead.id,
                    closer_id="user_src",
                    closer_name="user_src",
                    closer_email="user_src@example.com",
                    scheduled_at=at,
                    ends_at=at + timedelta(minutes=45),
                    duration_minutes=45,
                    time_zone="UTC",
                    action_items=[],
                    form_data=[],
                    reschedule_count=0,
                    sequence=0,
                    override_conflict=False,
                    calendar_event_id=event_id,
                    calendar_grant_id=source_calendar.id,
                    conferencing_link=f"http://localhost:8000/meet/{token}",
                )
            )
        await session.commit()


async def _timed(client: httpx.AsyncClient, key: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    r = await client.post(
        "/v1/calls/bulk-reassign", headers={"Authorization": f"Bearer {key}"}, json=body
    )
    elapsed = time.perf_counter() - started
    data = r.json()["data"]
    assert data["failed"] == 0, data
    return elapsed


async def main(url: str, calls: int, hosts: int) -> None:
    settings = Settings(database_url=url, env="test", log_json=True)
    database = Database(url)
    async with database.writer() as session:
        org, key = await create_organization(session, secret_key=settings.secret_key, name="b")
        await session.commit()
    await _fill(database, org.id, calls, hosts)
    app = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=600) as client:
        dry = await _timed(
            client, key.api_key, {"from_closer_id": "user_src", "to": "user_one", "dry_run": True}
        )
        named = await _timed(client, key.api_key, {"from_closer_id": "user_src", "to": "user_one"})
        auto = await _timed(client, key.api_key, {"from_closer_id": "user_one", "to": "auto"})
    await database.dispose()
    dialect = database.dialect
    for name, seconds in (("dry run", dry), ("to a closer", named), ("auto", auto)):
        print(
            f"{dialect}: bulk reassign of {calls} calls, {name}: {seconds:.2f} s "
            f"({seconds / calls * 1000:.1f} ms per call)"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=4)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    with tempfile.TemporaryDirectory() as tmp:
        database_url = arguments.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        configure_logging("WARNING", json=True)
        if database_url.startswith("postgresql"):
            asyncio.run(_reset(database_url))
        upgrade(database_url)  # Alembic runs its own event loop
        asyncio.run(main(database_url, arguments.calls, arguments.hosts))

"""Calendar credentials at rest: one Fernet token per connection, NULL when there are none."""

from __future__ import annotations

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.credentials import open_credentials, reseal_credentials, seal_credentials
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.secrets import SecretBox, secret_box
from closerdesk.models import CalendarConnection
from tests.factories import Org, create_member

CALDAV = {"url": "https://dav.example.test/", "username": "ana", "password": "hunter2 ü"}


async def raw_credentials(database: Database, member_id: str) -> str | None:
    async with database.reader() as s:
        value = await s.scalar(
            text("SELECT credentials FROM calendar_connections WHERE member_id = :member"),
            {"member": member_id},
        )
    return None if value is None else str(value)


async def test_the_builtin_calendar_stores_no_credentials(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    member = await create_member(session, org, calendar=False)
    r = await client.put(
        f"/v1/team/{member.id}/calendar", headers=org.headers, json={"provider": "builtin"}
    )
    assert r.status_code == 200, r.text
    assert await raw_credentials(database, member.id) is None
    async with database.reader() as s:
        connection = await s.scalar(
            select(CalendarConnection).where(CalendarConnection.member_id == member.id)
        )
    assert connection is not None
    assert open_credentials(secret_box(Settings()), connection) == {}


async def test_credentials_are_stored_encrypted_and_open_again(
    org: Org, session: AsyncSession, database: Database, settings: Settings
) -> None:
    box = secret_box(settings)
    assert seal_credentials(box, {}) is None
    member = await create_member(session, org)
    connection = await session.scalar(
        select(CalendarConnection).where(CalendarConnection.member_id == member.id)
    )
    assert connection is not None
    connection.credentials = seal_credentials(box, CALDAV)
    await session.commit()

    raw = await raw_credentials(database, member.id)
    assert raw is not None
    for clear in ("dav.example.test", "ana", "hunter2", "password"):
        assert clear not in raw
    async with database.reader() as s:
        read = await s.get(CalendarConnection, connection.id)
    assert read is not None
    assert open_credentials(box, read) == CALDAV


async def test_keys_rotate_re_encrypts_credentials(
    org: Org, session: AsyncSession, database: Database, settings: Settings
) -> None:
    old = secret_box(settings)
    new_key = Fernet.generate_key().decode()
    both = SecretBox([new_key, settings.encryption_keys.get_secret_value()])
    member = await create_member(session, org)
    builtin = await create_member(session, org)  # NULL credentials: nothing to do
    await session.execute(
        text("UPDATE calendar_connections SET credentials = :token WHERE member_id = :member"),
        {"token": seal_credentials(old, CALDAV), "member": member.id},
    )
    await session.commit()

    async with database.writer() as s:
        done = await reseal_credentials(s, both)
        await s.commit()
    assert (done.resealed, done.current) == (1, 0)
    raw = await raw_credentials(database, member.id)
    assert raw is not None
    assert SecretBox([new_key]).decrypt_json(raw) == CALDAV
    assert await raw_credentials(database, builtin.id) is None

"""Read paths (docs/performance.md, "Read paths"): the API-key cache and its revocation bound,
read requests in one database round trip on PostgreSQL, read-only sessions, and a connection
the server killed costing at most one failed request."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, insert, select, text

from closerdesk.app import create_app
from closerdesk.auth.service import KeyCache, hash_key, revoke_key
from closerdesk.config import Settings
from closerdesk.db import Database, WriteInReadRequest
from closerdesk.models import ApiKey, Organization
from tests.factories import Org, create_call, create_lead, create_member, create_org


async def _key_id(database: Database, settings: Settings, clear: str) -> str:
    async with database.reader() as s:
        key_id = await s.scalar(
            select(ApiKey.id).where(ApiKey.key_hash == hash_key(settings.secret_key, clear))
        )
    assert key_id is not None
    return key_id


async def _revoke_elsewhere(database: Database, key_id: str) -> None:
    """As ``closerdesk apikey revoke`` does from its own process: this app's cache is not told."""
    async with database.writer() as s:
        assert await revoke_key(s, key_id) is True
        await s.commit()


async def test_key_revoked_in_process_is_refused_at_once(
    app: FastAPI, client: httpx.AsyncClient, org: Org, database: Database, settings: Settings
) -> None:
    headers = org.auth("read")
    assert (await client.get("/v1/calls", headers=headers)).status_code == 200  # now cached
    async with database.writer() as s:
        key_id = await _key_id(database, settings, org.read_key)
        assert await revoke_key(s, key_id, cache=app.state.key_cache) is True
        await s.commit()
    assert (await client.get("/v1/calls", headers=headers)).status_code == 401


async def test_key_revoked_elsewhere_is_refused_within_the_cache_seconds(
    app: FastAPI, client: httpx.AsyncClient, org: Org, database: Database, settings: Settings
) -> None:
    now = [1000.0]
    app.state.key_cache = KeyCache(settings.api_key_cache_seconds, clock=lambda: now[0])
    headers = org.auth("read")
    assert (await client.get("/v1/calls", headers=headers)).status_code == 200
    await _revoke_elsewhere(database, await _key_id(database, settings, org.read_key))
    now[0] += settings.api_key_cache_seconds - 0.01  # still inside the documented bound
    assert (await client.get("/v1/calls", headers=headers)).status_code == 200
    now[0] += 0.01  # the bound has passed: looked up again, refused
    assert (await client.get("/v1/calls", headers=headers)).status_code == 401
    assert (await client.get("/v1/calls", headers=org.headers)).status_code == 200


async def test_without_cache_a_revoked_key_is_refused_at_once(
    settings: Settings, database: Database, org: Org
) -> None:
    app = create_app(settings.model_copy(update={"api_key_cache_seconds": 0}), database=database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers = org.auth("read")
        assert (await client.get("/v1/calls", headers=headers)).status_code == 200
        await _revoke_elsewhere(database, await _key_id(database, settings, org.read_key))
        assert (await client.get("/v1/calls", headers=headers)).status_code == 401


def test_key_cache_keeps_live_keys_only_and_bounded() -> None:
    now = [0.0]
    cache = KeyCache(5, max_keys=2, clock=lambda: now[0])
    from closerdesk.auth.service import AuthContext

    for i in range(3):
        cache.put(f"d{i}", AuthContext("org", f"key{i}", "read"))
    assert cache.get("d0") is None  # the oldest went first
    assert cache.get("d2") is not None
    cache.forget("key2")
    assert cache.get("d2") is None
    now[0] = 5.0
    assert cache.get("d1") is None  # expired


async def test_read_only_session_refuses_to_write(database: Database) -> None:
    async with database.read_only() as s:
        with pytest.raises(WriteInReadRequest):
            await s.execute(insert(Organization).values(id="org_x", name="x", is_demo=False))
    async with database.reader() as s:
        assert await s.scalar(select(Organization.id).where(Organization.id == "org_x")) is None


# --- PostgreSQL: round trips on the wire --------------------------------------------------------


class _Counting(asyncpg.Connection):  # type: ignore[misc]
    """Counts what asyncpg sends besides prepared statements' executions: BEGIN/COMMIT/
    ROLLBACK and other simple queries, statements prepared, pings."""

    counts: ClassVar[Counter[str]] = Counter()

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        _Counting.counts[query.split()[0].rstrip(";").upper()] += 1
        return await super().execute(query, *args, **kwargs)

    async def prepare(self, query: str, *args: Any, **kwargs: Any) -> Any:
        _Counting.counts["PREPARE"] += 1
        return await super().prepare(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        _Counting.counts["FETCHROW"] += 1
        return await super().fetchrow(query, *args, **kwargs)


def _postgres_only(url: str) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("round trips on the wire: PostgreSQL only")


async def test_a_get_is_one_round_trip_on_postgresql(settings: Settings, database_url: str) -> None:
    _postgres_only(database_url)
    counted = Database(database_url, connect_args={"connection_class": _Counting})
    statements: list[str] = []
    event.listen(
        counted.engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_a: statements.append(statement),
    )
    try:
        org = await create_org(counted, settings, "Round trips")
        async with counted.writer() as s:
            closer = await create_member(s, org)
            lead = await create_lead(s, org)
            call = await create_call(s, org, lead=lead, closer=closer)
            await s.commit()
        app = create_app(settings, database=counted)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for path in (f"/v1/calls/{call.id}", f"/v1/calls?closer_id={closer.id}&limit=100"):
                # The first request caches the key and prepares the statement on the connection.
                assert (await client.get(path, headers=org.headers)).status_code == 200
                _Counting.counts.clear()
                statements.clear()
                response = await client.get(path, headers=org.headers)
                assert response.status_code == 200
                assert len(statements) == 1, statements
                assert sum(_Counting.counts.values()) == 0, _Counting.counts  # no BEGIN, no ping
    finally:
        await counted.dispose()


async def test_a_killed_connection_costs_at_most_one_failed_request(
    settings: Settings, database_url: str, org: Org
) -> None:
    _postgres_only(database_url)
    name = "cd_kill_test"
    killed = Database(
        database_url, pool_size=2, connect_args={"server_settings": {"application_name": name}}
    )
    try:
        app = create_app(settings, database=killed)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/v1/calls", headers=org.headers)).status_code == 200
            async with killed.writer() as s:  # two connections in the pool now
                await s.execute(text("SELECT 1"))
                assert (await client.get("/v1/calls", headers=org.headers)).status_code == 200
            admin = await asyncpg.connect(database_url.replace("+asyncpg", ""))
            try:
                ended = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    name,
                )
            finally:
                await admin.close()
            assert ended >= 1
            answers = [
                (await client.get("/v1/calls", headers=org.headers)).status_code for _ in range(6)
            ]
        assert answers.count(200) >= 5, answers
        assert answers[-4:] == [200] * 4, answers
    finally:
        await killed.dispose()


async def test_a_key_the_cache_still_accepts_keeps_its_idempotency(
    app: FastAPI, client: httpx.AsyncClient, org: Org, database: Database, settings: Settings
) -> None:
    """Revoked by another process, a key works until the cache lets it go; meanwhile a retried
    POST with an ``Idempotency-Key`` is still replayed, never run twice (docs/idempotency.md)."""
    headers = {**org.auth("write"), "Idempotency-Key": "retry-after-revoke"}
    body = {"email": "ada@example.com", "full_name": "Ada Lovelace"}
    assert (await client.get("/v1/leads", headers=headers)).status_code == 200  # now cached
    await _revoke_elsewhere(database, await _key_id(database, settings, org.write_key))
    first = await client.post("/v1/leads", headers=headers, json=body)
    again = await client.post("/v1/leads", headers=headers, json=body)
    assert first.status_code == 201, first.text
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["data"]["id"] == first.json()["data"]["id"]

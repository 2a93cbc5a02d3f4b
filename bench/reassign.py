"""Benchmark: reassign latency when the new closer has 10 or 10,000 calls, next to raw SQL.

Not a test: it prints its figures. Needs PostgreSQL; the database given is emptied (public
schema dropped and recreated), migrated to head and filled with INSERT … SELECT
generate_series:

* one organization, a source closer ``user_src`` holding the calls to reassign (one upcoming
  call per hour from now + 2 days, each with its built-in calendar event and live
  conferencing link), the targets ``user_few`` (10 past calls) and ``user_many`` (10,000 past
  calls, one every 8 hours back from now), and ``--filler`` more past calls on 20 other
  closers; every past call has its calendar event and one history row;
* each reassign moves a fresh upcoming call to a target: no conflict, nothing left to undo.

Four series run in interleaved rounds (``--rounds`` × ``--per-round`` sequential requests
each): the API (``POST /v1/calls/{id}/reassign-closer`` in process over ASGI, API key, pool
and all) to ``user_few`` and to ``user_many``, and a raw-SQL reassign on one asyncpg
connection making the same reads and writes (the call with its lead locked, the closer with
its connections locked, the overlap and busy queries, the new link and event, the old link
revoked, the call and closer updated, history and outbox rows, the subscriptions read, the
old event cancelled: 15 round trips with ``BEGIN`` and ``COMMIT``) to each target.

    .venv/bin/python bench/reassign.py --database-url postgresql+asyncpg://… [--rounds 7]
"""

# The SQL below is built from this file's own constants only, never from input.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
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

TARGETS = {"few": ("user_few", 10), "many": ("user_many", 10_000)}
SOURCE = "user_src"
BASE = "http://bench"


async def _reset(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


def _fill_sql(org: str, upcoming: int, filler: int) -> list[str]:
    members = [SOURCE, *(m for m, _ in TARGETS.values()), *(f"user_f{i}" for i in range(20))]
    values = ", ".join(
        f"('{org}', '{m}', '{m}', '{m}@example.com', 'closer', 'UTC', true, now(), now())"
        for m in members
    )
    calls_cols = """(id, organization_id, call_kind, status, lead_id, closer_id, closer_name,
        closer_email, scheduled_at, ends_at, duration_minutes, time_zone, conferencing_link,
        calendar_event_id, calendar_grant_id, action_items, form_data, reschedule_count,
        sequence, created_at, updated_at)"""
    past = [
        (TARGETS["few"][0], TARGETS["few"][1], "'user_few'"),
        (TARGETS["many"][0], TARGETS["many"][1], "'user_many'"),
        ("filler", filler, "'user_f' || (g % 20)"),
    ]
    sql = [
        f"""INSERT INTO team_members (organization_id, id, name, email, role, time_zone,
            is_active, created_at, updated_at) VALUES {values}""",
        f"""INSERT INTO calendar_connections (id, organization_id, member_id, provider,
            provider_grant_id, calendar_id, status, created_at, updated_at)
            SELECT 'cal_' || id, organization_id, id, 'builtin', 'cal_' || id,
                   'builtin:' || id, 'valid', now(), now()
            FROM team_members WHERE organization_id = '{org}'""",
        f"""INSERT INTO leads (id, organization_id, email, full_name, time_zone, status,
            metadata, created_at, updated_at)
            VALUES ('lead_bench', '{org}', 'lead@example.com', 'Lee Lead', 'UTC', 'booked',
                    '{{}}', now(), now())""",
        f"""INSERT INTO calls {calls_cols}
            SELECT 'call_up' || g, '{org}', 'booking', 'scheduled', 'lead_bench', '{SOURCE}',
                   '{SOURCE}', '{SOURCE}@example.com', s, s + interval '30 minutes', 30, 'UTC',
                   'http://bench/meet/tok' || g, 'evt_up' || g, 'cal_{SOURCE}', '[]', '[]',
                   0, 0, now(), now()
            FROM generate_series(1, {upcoming}) g,
                 LATERAL (SELECT date_trunc('hour', now()) + interval '2 days'
                                 + make_interval(hours => g) AS s) x""",
        f"""INSERT INTO conferencing_links (id, organization_id, call_id, token, room_url,
            created_at)
            SELECT 'conf_up' || g, '{org}', 'call_up' || g, 'tok' || g,
                   'https://meet.example/r' || g, now()
            FROM generate_series(1, {upcoming}) g""",
    ]
    for name, count, closer in past:
        sql.append(
            f"""INSERT INTO calls {calls_cols}
            SELECT 'call_{name}' || g, '{org}', 'booking',
                   CASE WHEN g % 10 = 0 THEN 'cancelled' ELSE 'shown' END, 'lead_bench',
                   {closer}, 'c', 'c@example.com', s, s + interval '45 minutes', 45, 'UTC',
                   NULL, 'evt_{name}' || g, 'cal_' || {closer}, '[]', '[]', 0, 0, s, s
            FROM generate_series(1, {count}) g,
                 LATERAL (SELECT now() - make_interval(hours => 8 * g) AS s) x"""
        )
    sql += [
        f"""INSERT INTO calendar_events (id, organization_id, connection_id, call_id, title,
            description, location, starts_at, ends_at, status, created_at, updated_at)
            SELECT calendar_event_id, organization_id, calendar_grant_id, id, 'Call', '', '',
                   scheduled_at, ends_at, 'confirmed', created_at, created_at
            FROM calls WHERE organization_id = '{org}'""",
        f"""INSERT INTO call_events (id, organization_id, call_id, type, actor_type, actor_id,
            before, after, created_at)
            SELECT 'cev_' || id, organization_id, id, 'booked', 'api_key', 'key_bench', '{{}}',
                   '{{}}', created_at
            FROM calls WHERE organization_id = '{org}' AND closer_id <> '{SOURCE}'""",
        "ANALYZE",
    ]
    return sql


class RawReassign:
    """The same reads and writes as the API's reassign, as plain SQL on one connection."""

    LOCK_CALL = """SELECT c.*, l.email, l.full_name, l.phone, l.time_zone AS lead_tz,
            b.description FROM calls c JOIN leads l ON l.id = c.lead_id
        LEFT JOIN booking_links b ON b.organization_id = c.organization_id
            AND b.id = c.booking_link_id
        WHERE c.organization_id = $1 AND c.id = $2 FOR NO KEY UPDATE OF c"""
    LOCK_MEMBER = """SELECT m.*, cc.id AS connection_id, cc.member_id AS connection_member,
            cc.status AS connection_status
        FROM team_members m LEFT JOIN calendar_connections cc
            ON cc.organization_id = m.organization_id AND (cc.member_id = m.id OR cc.id = $3)
        WHERE m.organization_id = $1 AND m.id = $2 FOR NO KEY UPDATE OF m"""
    OVERLAPS = """SELECT * FROM calls WHERE organization_id = $1 AND closer_id = $2
        AND call_kind = 'booking' AND status <> 'cancelled'
        AND scheduled_at > $3::timestamptz - interval '1441 minutes' AND scheduled_at < $4
        AND ends_at > $3 AND id <> $5 ORDER BY scheduled_at"""
    BUSY = """SELECT starts_at, ends_at FROM busy_blocks WHERE organization_id = $1
            AND member_id = $2 AND starts_at < $4 AND ends_at > $3
        UNION ALL SELECT starts_at, ends_at FROM calendar_events WHERE connection_id = $5
            AND call_id IS NULL AND status = 'confirmed' AND starts_at < $4 AND ends_at > $3"""

    def __init__(self, conn: asyncpg.Connection, org: str) -> None:
        self.conn, self.org = conn, org

    async def reassign(self, call_id: str, closer_id: str) -> None:
        conn, org, now = self.conn, self.org, utcnow()
        async with conn.transaction():
            call = await conn.fetchrow(self.LOCK_CALL, org, call_id)
            rows = await conn.fetch(self.LOCK_MEMBER, org, closer_id, call["calendar_grant_id"])
            mine = next(r for r in rows if r["connection_member"] == closer_id)
            start, end = call["scheduled_at"], call["ends_at"]
            clash = await conn.fetch(self.OVERLAPS, org, closer_id, start, end, call_id)
            busy = await conn.fetch(self.BUSY, org, closer_id, start, end, mine["connection_id"])
            assert not clash
            assert not busy
            token = secrets.token_urlsafe(18)
            link = f"{BASE}/meet/{token}"
            await conn.execute(
                "INSERT INTO conferencing_links (id, organization_id, call_id, token, room_url,"
                " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                new_id("conf"), org, call_id, token, "https://meet.example/x", now,
            )  # fmt: skip
            event_id = new_id("evt")
            await conn.execute(
                "INSERT INTO calendar_events (id, organization_id, connection_id, call_id, title,"
                " description, location, starts_at, ends_at, status, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'confirmed', $10, $10)",
                event_id, org, mine["connection_id"], call_id, "Call with Lee Lead",
                "A call", link, start, end, now,
            )  # fmt: skip
            old_token = call["conferencing_link"].rpartition("/meet/")[2]
            await conn.execute(
                "UPDATE conferencing_links SET revoked_at = $1 WHERE organization_id = $2"
                " AND token = $3 AND revoked_at IS NULL",
                now, org, old_token,
            )  # fmt: skip
            member = rows[0]
            await conn.execute(
                "UPDATE calls SET closer_id = $1, closer_name = $2, closer_email = $3,"
                " conferencing_link = $4, calendar_event_id = $5, calendar_grant_id = $6,"
                " override_conflict = false, sequence = sequence + 1, updated_at = $7"
                " WHERE id = $8",
                closer_id, member["name"], member["email"], link, event_id,
                mine["connection_id"], now, call_id,
            )  # fmt: skip
            await conn.execute(
                "UPDATE team_members SET last_booked_at = $1, updated_at = $1"
                " WHERE organization_id = $2 AND id = $3",
                now, org, closer_id,
            )  # fmt: skip
            before = {k: call[k] for k in ("closer_id", "closer_name", "calendar_event_id")}
            after = {"closer_id": closer_id, "closer_name": member["name"], "event": event_id}
            await conn.execute(
                "INSERT INTO call_events (id, organization_id, call_id, type, actor_type,"
                " actor_id, reason, before, after, created_at) VALUES ($1, $2, $3,"
                " 'closer_reassigned', 'api_key', 'key_raw', NULL, $4, $5, $6)",
                new_id("cev"), org, call_id, json.dumps(before), json.dumps(after), now,
            )  # fmt: skip
            call_json = {k: str(v) for k, v in dict(call).items()}
            payload = {"event": "call.closer_reassigned", "data": {**after, "call": call_json}}
            await conn.execute(
                "INSERT INTO webhook_events (id, organization_id, type, payload, created_at)"
                " VALUES ($1, $2, 'call.closer_reassigned', $3, $4)",
                new_id("msg"), org, json.dumps(payload), now,
            )  # fmt: skip
            await conn.fetch("SELECT * FROM webhook_subscriptions WHERE organization_id = $1", org)
            await conn.execute(
                "UPDATE calendar_events SET status = 'cancelled', updated_at = $1"
                " WHERE id = $2 AND connection_id = $3 AND status <> 'cancelled'",
                now, call["calendar_event_id"], call["calendar_grant_id"],
            )  # fmt: skip


async def _timed(action: Callable[[], Awaitable[None]], cpu: list[float]) -> float:
    """Wall milliseconds of ``action``; its process CPU milliseconds go to ``cpu``."""
    started, cpu_started = time.perf_counter(), time.process_time()
    await action()
    cpu.append((time.process_time() - cpu_started) * 1000)
    return (time.perf_counter() - started) * 1000


async def main(url: str, rounds: int, per_round: int, filler: int) -> None:
    upcoming = (rounds * per_round + 3) * 4
    # The rate limits are raised so that no request of a long run is refused; the limiter
    # still runs on every request.
    settings = Settings(
        database_url=url,
        env="test",
        log_json=True,
        rate_limit_per_key="10000000/minute",
        rate_limit_per_org="10000000/minute",
    )
    database = Database(url)
    async with database.writer() as session:
        org, key = await create_organization(session, secret_key=settings.secret_key, name="b")
        await session.commit()
    started = time.perf_counter()
    async with database.engine.begin() as conn:
        for statement in _fill_sql(org.id, upcoming, filler):
            await conn.execute(text(statement))
    print(f"filled in {time.perf_counter() - started:.0f} s: {filler + 10_010} past calls")
    raw_conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    raw = RawReassign(raw_conn, org.id)
    app = create_app(settings, database=database)
    headers = {"Authorization": f"Bearer {key.api_key}"}
    next_call = iter(range(1, upcoming + 1))
    samples: dict[str, list[float]] = {f"{w} {t}": [] for w in ("api", "raw") for t in TARGETS}
    cpu: dict[str, list[float]] = {name: [] for name in samples}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE) as client,
    ):

        async def api(target: str) -> None:
            path = f"/v1/calls/call_up{next(next_call)}/reassign-closer"
            response = await client.post(path, json={"new_closer_id": target}, headers=headers)
            assert response.status_code == 200, response.text

        async def by_sql(target: str) -> None:
            await raw.reassign(f"call_up{next(next_call)}", target)

        series: dict[str, Callable[[], Awaitable[None]]] = {}
        for name, (member, _) in TARGETS.items():
            series[f"api {name}"] = lambda m=member: api(m)  # type: ignore[misc]
            series[f"raw {name}"] = lambda m=member: by_sql(m)  # type: ignore[misc]
        for action in series.values():  # warm-up: prepared statements, pool, caches
            for _ in range(3):
                await action()
        for _ in range(rounds):
            for name, action in series.items():
                samples[name] += [await _timed(action, cpu[name]) for _ in range(per_round)]
    await raw_conn.close()
    await database.dispose()

    p50 = {name: statistics.median(values) for name, values in samples.items()}
    rate = {name: 1000 / statistics.fmean(values) for name, values in samples.items()}
    print(f"{rounds} interleaved rounds x {per_round} sequential requests per series")
    print("(req/s: sequential, 1 / mean latency; CPU: this process, client side included)")
    print(f"{'series':<12}{'p50 ms':>10}{'p90 ms':>10}{'req/s':>10}{'CPU ms':>10}")
    for name, values in samples.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        mean_cpu = statistics.fmean(cpu[name])
        print(f"{name:<12}{p50[name]:>10.2f}{p90:>10.2f}{rate[name]:>10.1f}{mean_cpu:>10.2f}")
    for kind in ("api", "raw"):
        growth = p50[f"{kind} many"] / p50[f"{kind} few"]
        print(f"{kind}: p50 growth 10 -> 10,000 calls of the new closer: {growth:.2f}x")
    for target in TARGETS:
        ratio = rate[f"api {target}"] / rate[f"raw {target}"]
        print(f"throughput api / raw SQL ({target}): {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--filler", type=int, default=200_000, help="other closers' past calls")
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    asyncio.run(_reset(args.database_url))
    upgrade(args.database_url)
    asyncio.run(main(args.database_url, args.rounds, args.per_round, args.filler))

"""EXPLAIN evidence: overlap and busy queries read a window, not a closer's whole past.

Not a test: it prints its figures. Needs a PostgreSQL server; the bench drops and re-creates
its own database (default ``cd_explain``). Run from the repository root:

    .venv/bin/python bench/explain_scans.py \\
        [--url postgresql+asyncpg://postgres@127.0.0.1:5432/cd_explain] [--calls 1000000]

1. The database is migrated to revision 0004 (the schema before bounded scans) and filled with
   INSERT … SELECT generate_series: one organization, 200 closers with built-in calendars,
   10,000 leads and ``--calls`` calls, each with its built-in calendar event (``call_id``
   set). The "heavy" closer has 10,000 past calls (one every 8 hours back from ``NOW``; a
   tenth cancelled, a few lasting the longest allowed 24 hours) and 20 upcoming ones,
   3,000 past foreign events and 2,000 past busy blocks plus a few upcoming ones. The other
   closers share the remaining calls (5 years of them) and have 200 busy blocks each.
2. The queries as they were (their SQL is kept below as the baseline) are explained with
   ``EXPLAIN (ANALYZE, BUFFERS)``, warm (the third run of each).
3. The database is upgraded to head (migration 0006 on the full table) and the queries the code
   runs now are captured from the real functions (``overlapping_calls``, ``busy_by_host``,
   ``BuiltinCalendar.busy``) and explained the same way. Old and new must return the same rows.

"entries" is what the scan had to read: index entries of a bitmap index scan, or rows fetched
by an index scan (those returned plus those its filter removed). Buffers are shared blocks
(hit + read) of the whole statement.
"""

# The SQL below is built from this file's own constants only, never from input.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import asyncio
import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from closerdesk.booking_links.service import Host, busy_by_host
from closerdesk.calls.repository import overlapping_calls
from closerdesk.migrate import upgrade
from closerdesk.models import CalendarConnection, TeamMember

NOW = datetime(2027, 1, 4, tzinfo=UTC)
ORG = "org_bench"
HEAVY = "user_heavy"
HEAVY_CONNECTION = "cal_heavy"
CLOSERS = 200
PAST_CALLS = 10_000
FOREIGN_EVENTS = 3_000
BUSY_BLOCKS = 2_000

# The conflict check of a 45-minute booking two days ahead, and a 14-day slot window.
CHECK_START = NOW + timedelta(days=2, hours=15)
CHECK_END = CHECK_START + timedelta(minutes=45)
WINDOW_START = NOW + timedelta(hours=2)
WINDOW_END = WINDOW_START + timedelta(days=14)

# The SQL as it was before bounded scans (what SQLAlchemy sent, parameters numbered).
OLD_OVERLAPPING_CALLS = """
SELECT calls.id FROM calls
WHERE calls.organization_id = $1 AND calls.closer_id = $2 AND calls.call_kind = 'booking'
  AND calls.status != 'cancelled' AND calls.scheduled_at < $4 AND calls.ends_at > $3
ORDER BY calls.scheduled_at"""
OLD_BUSY_BY_HOST_CALLS = """
SELECT calls.closer_id, calls.scheduled_at, calls.ends_at,
       booking_links.buffer_before_minutes, booking_links.buffer_after_minutes
FROM calls LEFT OUTER JOIN booking_links ON booking_links.id = calls.booking_link_id
WHERE calls.organization_id = $1 AND calls.closer_id IN ($2) AND calls.call_kind = 'booking'
  AND calls.status != 'cancelled' AND calls.scheduled_at < $4 AND calls.ends_at > $3"""
OLD_BUSY_BLOCKS = """
SELECT busy_blocks.starts_at, busy_blocks.ends_at FROM busy_blocks
WHERE busy_blocks.organization_id = $1 AND busy_blocks.member_id = $2
  AND busy_blocks.starts_at < $4 AND busy_blocks.ends_at > $3"""
OLD_CALENDAR_EVENTS = """
SELECT calendar_events.starts_at, calendar_events.ends_at FROM calendar_events
WHERE calendar_events.connection_id = $1 AND calendar_events.call_id IS NULL
  AND calendar_events.status = 'confirmed' AND calendar_events.starts_at < $3
  AND calendar_events.ends_at > $2"""


def _fill_sql(calls: int) -> list[str]:
    """INSERT … SELECT generate_series statements for the dataset (module docstring)."""
    now = f"timestamptz '{NOW.isoformat()}'"
    others = calls - PAST_CALLS - 20
    return [
        f"INSERT INTO organizations (id, name, is_demo, created_at) "
        f"VALUES ('{ORG}', 'Bench', false, {now})",
        f"""INSERT INTO team_members (organization_id, id, name, email, role, time_zone,
                is_active, created_at, updated_at)
            SELECT '{ORG}', CASE WHEN g = 0 THEN '{HEAVY}' ELSE 'user_c' || g END,
                   'Closer ' || g, 'closer' || g || '@example.com', 'closer', 'UTC', true,
                   {now}, {now}
            FROM generate_series(0, {CLOSERS - 1}) g""",
        f"""INSERT INTO calendar_connections (id, organization_id, member_id, provider,
                provider_grant_id, calendar_id, status, credentials, created_at, updated_at)
            SELECT CASE WHEN g = 0 THEN '{HEAVY_CONNECTION}' ELSE 'cal_c' || g END, '{ORG}',
                   CASE WHEN g = 0 THEN '{HEAVY}' ELSE 'user_c' || g END, 'builtin',
                   'builtin', 'builtin', 'valid', '{{}}', {now}, {now}
            FROM generate_series(0, {CLOSERS - 1}) g""",
        f"""INSERT INTO leads (id, organization_id, email, status, metadata, created_at,
                updated_at)
            SELECT 'lead_' || g, '{ORG}', 'lead' || g || '@example.com', 'booked', '{{}}',
                   {now}, {now}
            FROM generate_series(0, 9999) g""",
        # Calls are staged, then written in time order, so that a closer's rows are spread over
        # the table as in a live one.
        "CREATE UNLOGGED TABLE staged_calls (LIKE calls)",
        # The heavy closer: 10,000 past calls every 8 hours (every 500th lasts 24 hours,
        # every 10th cancelled), then 20 upcoming ones every 17 hours from NOW + 3 h.
        f"""INSERT INTO staged_calls (id, organization_id, call_kind, status, lead_id, closer_id,
                scheduled_at, ends_at, duration_minutes, action_items, form_data,
                reschedule_count, sequence, created_at, updated_at)
            SELECT 'call_h' || g, '{ORG}', 'booking',
                   CASE WHEN g % 10 = 0 THEN 'cancelled' WHEN g > 0 THEN 'shown'
                        ELSE 'scheduled' END,
                   'lead_' || (g % 10000), '{HEAVY}', s, s + make_interval(mins => m), m,
                   '[]', '[]', 0, 0, {now}, {now}
            FROM generate_series(1, {PAST_CALLS}) g,
                 LATERAL (SELECT {now} - make_interval(hours => 8 * g) AS s,
                                 CASE WHEN g % 500 = 0 THEN 1440 ELSE 45 END AS m) x""",
        f"""INSERT INTO staged_calls (id, organization_id, call_kind, status, lead_id, closer_id,
                scheduled_at, ends_at, duration_minutes, action_items, form_data,
                reschedule_count, sequence, created_at, updated_at)
            SELECT 'call_u' || g, '{ORG}', 'booking', 'scheduled', 'lead_' || g, '{HEAVY}', s,
                   s + interval '45 minutes', 45, '[]', '[]', 0, 0, {now}, {now}
            FROM generate_series(1, 20) g,
                 LATERAL (SELECT {now} + make_interval(hours => 3 + 17 * g) AS s) x""",
        # Everyone else: calls spread over the 5 years around NOW.
        f"""INSERT INTO staged_calls (id, organization_id, call_kind, status, lead_id, closer_id,
                scheduled_at, ends_at, duration_minutes, action_items, form_data,
                reschedule_count, sequence, created_at, updated_at)
            SELECT 'call_o' || g, '{ORG}', 'booking',
                   CASE WHEN g % 10 = 0 THEN 'cancelled' ELSE 'shown' END,
                   'lead_' || (g % 10000), 'user_c' || (1 + g % {CLOSERS - 1}), s,
                   s + interval '45 minutes', 45, '[]', '[]', 0, 0, {now}, {now}
            FROM generate_series(0, {others - 1}) g,
                 LATERAL (SELECT {now} - interval '4 years'
                                 + make_interval(mins => (g::bigint * 2629800 / {others})::int)
                          AS s) x""",
        "INSERT INTO calls SELECT * FROM staged_calls ORDER BY scheduled_at",
        "DROP TABLE staged_calls",
        # Built-in calendars: an event per call; the heavy closer's foreign events and busy
        # blocks, and 200 busy blocks for every other closer.
        f"""INSERT INTO calendar_events (id, organization_id, connection_id, call_id, title,
                description, location, starts_at, ends_at, status, created_at, updated_at)
            SELECT 'evt_' || c.id, '{ORG}',
                   CASE WHEN c.closer_id = '{HEAVY}' THEN '{HEAVY_CONNECTION}'
                        ELSE 'cal_' || substr(c.closer_id, 6) END,
                   c.id, 'Call', '', '', c.scheduled_at, c.ends_at,
                   CASE WHEN c.status = 'cancelled' THEN 'cancelled' ELSE 'confirmed' END,
                   {now}, {now}
            FROM calls c ORDER BY c.scheduled_at""",
        f"""INSERT INTO busy_blocks (id, organization_id, member_id, starts_at, ends_at, title,
                created_at)
            SELECT 'busy_o' || g, '{ORG}', 'user_c' || (1 + g % {CLOSERS - 1}), s,
                   s + interval '3 hours', 'Time off', {now}
            FROM generate_series(0, {200 * (CLOSERS - 1) - 1}) g,
                 LATERAL (SELECT {now} - make_interval(mins => (g * 11)::int) AS s) x""",
        f"""INSERT INTO calendar_events (id, organization_id, connection_id, call_id, title,
                description, location, starts_at, ends_at, status, created_at, updated_at)
            SELECT 'evt_f' || g, '{ORG}', '{HEAVY_CONNECTION}', NULL, 'Dentist', '', '',
                   s, s + interval '1 hour', 'confirmed', {now}, {now}
            FROM generate_series(-5, {FOREIGN_EVENTS}) g,
                 LATERAL (SELECT {now} - make_interval(hours => 26 * g + 1) AS s) x""",
        f"""INSERT INTO busy_blocks (id, organization_id, member_id, starts_at, ends_at, title,
                created_at)
            SELECT 'busy_' || g, '{ORG}', '{HEAVY}', s,
                   s + CASE WHEN g % 100 = 0 THEN interval '5 days' ELSE interval '3 hours' END,
                   'Time off', {now}
            FROM generate_series(-3, {BUSY_BLOCKS}) g,
                 LATERAL (SELECT {now} - make_interval(hours => 40 * g + 5) AS s) x""",
        "ANALYZE",
    ]


@dataclass(frozen=True)
class Figures:
    rows: int
    entries: int
    removed: int
    buffers: int
    ms: float
    scans: str


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [node]
    for child in node.get("Plans", []):
        nodes += _walk(child)
    return nodes


def _figures(plan: dict[str, Any]) -> Figures:
    top = plan["Plan"]
    entries = removed = 0
    scans = []
    for node in _walk(top):
        loops = node.get("Actual Loops", 1)
        kind = node["Node Type"]
        node_removed = node.get("Rows Removed by Filter", 0) * loops
        removed += node_removed
        if kind == "Bitmap Index Scan":
            entries += node["Actual Rows"] * loops
        elif kind in ("Index Scan", "Index Only Scan", "Seq Scan"):
            entries += node["Actual Rows"] * loops + node_removed
        if "Index Name" in node or kind == "Seq Scan":
            scans.append(f"{kind} {node.get('Index Name', node.get('Relation Name', ''))}")
    return Figures(
        rows=top["Actual Rows"],
        entries=entries,
        removed=removed,
        buffers=top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0),
        ms=plan["Execution Time"],
        scans=", ".join(scans),
    )


async def _explain(conn: AsyncConnection, sql: str, params: Sequence[Any]) -> Figures:
    plan: list[dict[str, Any]] = []
    for _ in range(3):  # the third, warm run is reported
        result = await conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, tuple(params)
        )
        raw = result.scalar_one()
        plan = json.loads(raw) if isinstance(raw, str) else raw
    return _figures(plan[0])


async def _new_statements(url: str) -> list[tuple[str, Sequence[Any]]]:
    """Run the real functions once and keep what they sent (SELECTs only, in order)."""
    engine = create_async_engine(url)
    sent: list[tuple[str, Sequence[Any]]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _keep(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, tuple(parameters)))

    try:
        async with async_sessionmaker(engine)() as session:
            await _run_functions(session)
            await session.rollback()
    finally:
        await engine.dispose()
    return sent


async def _run_functions(session: AsyncSession) -> None:
    member = await session.get(TeamMember, (ORG, HEAVY))
    connection = await session.get(CalendarConnection, HEAVY_CONNECTION)
    assert member is not None
    assert connection is not None
    await overlapping_calls(session, ORG, HEAVY, CHECK_START, CHECK_END)
    host = Host(member=member, connection=connection, priority="high", weight=100, schedule=None)
    await busy_by_host(session, ORG, [host], WINDOW_START, WINDOW_END)


async def main(url: str, calls: int) -> None:
    server, _, name = url.rpartition("/")
    admin = create_async_engine(server + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        await admin.dispose()
    await asyncio.to_thread(upgrade, url, "0004")
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            loop = asyncio.get_running_loop()
            began = loop.time()
            for statement in _fill_sql(calls):
                await conn.exec_driver_sql(statement)
            total = (await conn.exec_driver_sql("SELECT count(*) FROM calls")).scalar_one()
            version = (await conn.exec_driver_sql("SHOW server_version")).scalar_one()
            print(f"PostgreSQL {version}, {platform.node()}")
            print(f"dataset: {total:,} calls, filled in {loop.time() - began:.0f} s\n")

            check = (ORG, HEAVY, CHECK_START, CHECK_END)
            window = (ORG, HEAVY, WINDOW_START, WINDOW_END)
            connection_window = (HEAVY_CONNECTION, WINDOW_START, WINDOW_END)
            old = {
                "overlapping_calls (conflict check, 45 min)": (OLD_OVERLAPPING_CALLS, check),
                "busy_by_host calls (14 days)": (OLD_BUSY_BY_HOST_CALLS, window),
                "builtin busy: busy blocks (14 days)": (OLD_BUSY_BLOCKS, window),
                "builtin busy: calendar events (14 days)": (
                    OLD_CALENDAR_EVENTS,
                    connection_window,
                ),
            }
            before = {k: await _explain(conn, sql, p) for k, (sql, p) in old.items()}

            began = loop.time()
            await asyncio.to_thread(upgrade, url, "head")
            print(f"migration 0006 on this dataset: {loop.time() - began:.1f} s")
            await conn.exec_driver_sql("ANALYZE")
            # overlapping_calls, busy_by_host's calls query, then the built-in calendar's busy
            # blocks and events (the member and connection loads left out).
            sent = await _new_statements(url)
            statements = [
                s
                for s in sent
                if not any(t in s[0] for t in ("team_members", "calendar_connections"))
            ]
            assert len(statements) == 4, [s for s, _ in statements]
            after = {k: await _explain(conn, *s) for k, s in zip(old, statements, strict=True)}
    finally:
        await engine.dispose()

    print()
    head = (
        f"{'query':<42} {'':>6} {'rows':>5} {'entries':>8} {'removed':>8} {'buffers':>8} {'ms':>7}"
    )
    print(head)
    print("-" * len(head))
    for key in old:
        for label, f in (("before", before[key]), ("after", after[key])):
            print(
                f"{key if label == 'before' else '':<42} {label:>6} {f.rows:>5} {f.entries:>8,} "
                f"{f.removed:>8,} {f.buffers:>8,} {f.ms:>7.3f}"
            )
        print(f"{'':<42} before: {before[key].scans}\n{'':<42}  after: {after[key].scans}")
        assert before[key].rows == after[key].rows, f"{key}: the rows differ"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/cd_explain")
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.calls))

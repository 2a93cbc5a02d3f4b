"""Benchmark: the same 20-host, 30-day slot query as ``bench/slots.py``, through the API.

Not a test: it prints its figures. ``bench/slots.py`` times the pure core alone; this times
``GET /v1/booking-links/{id}/slots`` end to end (auth, loading the link, its hosts, their calls
and their calendar busy time from the database, the core, and the JSON answer), in process over
ASGI, so that what a partner waits for is measured too. Busy intervals are busy blocks on the
hosts' built-in calendars (500, 1,000, 2,000 per host, fixed seed).

Each size is measured twice, in interleaved rounds: with the hosts on the built-in calendar
(busy blocks) and with the hosts on CalDAV calendars whose busy mirror (``calendar_busy``) holds
the same intervals. Slots never ask a provider, so the two should cost the same; the bench
checks that both answer the same slots and prints the ratio.

The pure core (``find_slots``, what ``bench/slots.py`` times) is timed in the same rounds on
exactly the same inputs: the link's hosts, schedules and busy intervals as the service reads
them for the same range, loaded once before the timed rounds (not timed), with the link's
parameters. The bench checks that the core answers the same slot starts as the API and prints
the ratio API p50 / core p50 for each calendar. Target (issue 10): at most 2. The ``cpu``
columns are this process's CPU time (``time.process_time``: the event loop and, on SQLite, the
driver's thread; not PostgreSQL's server), which other load on a shared machine affects far
less than the wall clock.

    .venv/bin/python bench/slots_api.py [--runs 20] [--database-url URL] [--sizes 500,1000]

The default database is a temporary SQLite file; a PostgreSQL URL is emptied (public schema
dropped and recreated) first.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from closerdesk.app import create_app
from closerdesk.auth.service import create_organization
from closerdesk.booking_links.schemas import BookingLinkCreate
from closerdesk.booking_links.service import (
    bookable_hosts,
    busy_by_host,
    create_link,
    get_link,
    slot_window,
)
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.logs import configure_logging
from closerdesk.migrate import upgrade
from closerdesk.models import BusyBlock, CalendarBusy, CalendarConnection, TeamMember
from closerdesk.scheduling.slots import HostSchedule, Slot, find_slots

HOSTS = 20
DAYS = 30
BUSY_COUNTS = (500, 1000, 2000)
SEED = 4
ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Sydney",
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def seed(database: Database, settings: Settings) -> tuple[str, str, list[str]]:
    """An organization, 20 closers with built-in calendars, one round-robin link."""
    async with database.writer() as session:
        org, key = await create_organization(session, secret_key=settings.secret_key, name="b")
        ids = [f"user_bench{i}" for i in range(HOSTS)]
        for i, member_id in enumerate(ids):
            session.add(
                TeamMember(
                    organization_id=org.id,
                    id=member_id,
                    name=member_id,
                    email=f"{member_id}@example.com",
                    role="closer",
                    time_zone=ZONES[i % len(ZONES)],
                    is_active=True,
                )
            )
        await session.flush()
        for member_id in ids:
            cid = new_id("cal")
            session.add(
                CalendarConnection(
                    id=cid,
                    organization_id=org.id,
                    member_id=member_id,
                    provider="builtin",
                    provider_grant_id=cid,
                    calendar_id=f"builtin:{member_id}",
                    credentials=None,
                )
            )
        await session.flush()
        body = BookingLinkCreate.model_validate(
            {
                "slug": "bench",
                "title": "Bench",
                "duration_minutes": 45,
                "slot_interval_minutes": 30,
                "minimum_notice_minutes": 120,
                "buffer_after_minutes": 15,
                "hosts": [
                    {
                        "member_id": m,
                        "priority": "medium",
                        "weight": 100,
                        "schedule": {
                            "time_zone": ZONES[i % len(ZONES)],
                            "weekly": [
                                {"weekday": d, "start": "09:00", "end": "17:00"} for d in WEEKDAYS
                            ],
                        },
                    }
                    for i, m in enumerate(ids)
                ],
            }
        )
        link = await create_link(session, org.id, body)
        await session.commit()
    return key.api_key, link.id, ids


async def set_busy(database: Database, org_id: str, ids: list[str], per_host: int) -> None:
    rnd = random.Random(SEED)
    start = utcnow().replace(microsecond=0)
    span = DAYS * 24 * 60
    async with database.writer() as session:
        await session.execute(delete(BusyBlock))
        await session.execute(delete(CalendarBusy))
        connections = dict(
            (
                await session.execute(select(CalendarConnection.member_id, CalendarConnection.id))
            ).all()
        )
        rows, mirrored = [], []
        for member_id in ids:
            for n in range(per_host):
                begin = start + timedelta(minutes=rnd.randrange(0, span, 5))
                end = begin + timedelta(minutes=rnd.randrange(15, 121, 5))
                rows.append(
                    {
                        "id": new_id("busy"),
                        "organization_id": org_id,
                        "member_id": member_id,
                        "starts_at": begin,
                        "ends_at": end,
                        "title": "Busy",
                        "created_at": start,
                    }
                )
                mirrored.append(
                    {
                        "organization_id": org_id,
                        "connection_id": connections[member_id],
                        "event_key": f"/calendars/{member_id}/event-{n}.ics",
                        "starts_at": begin,
                        "ends_at": end,
                    }
                )
        await session.execute(insert(BusyBlock), rows)
        await session.execute(insert(CalendarBusy), mirrored)
        await session.commit()
    await settle(database)


async def settle(database: Database) -> None:
    """What the database's own maintenance does to tables in service, done now: statistics
    (``ANALYZE``) and, on PostgreSQL, the visibility map (``VACUUM``) without which an index-only
    scan still visits every row it finds. Timing freshly loaded tables would measure neither."""
    async with database.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE busy_blocks, calendar_busy, calls")
        else:
            await conn.exec_driver_sql("ANALYZE")
            await conn.commit()


async def use_provider(database: Database, provider: str) -> None:
    """Every host on ``provider``: ``builtin`` reads busy blocks, ``caldav`` the mirror."""
    async with database.writer() as session:
        await session.execute(update(CalendarConnection).values(provider=provider))
        await session.commit()


async def core_inputs(
    database: Database, org_id: str, link_id: str, start: datetime, end: datetime
) -> Callable[[datetime], list[Slot]]:
    """The core on the inputs the API hands it for ``[start, end)``: hosts, schedules and busy
    intervals read once (as ``Interval``s, the core's public input), the link's parameters."""
    async with database.reader() as session:
        link = await get_link(session, org_id, link_id)
        hosts = await bookable_hosts(session, link)
        lo, hi = slot_window(link, start, end)
        busy = await busy_by_host(session, org_id, hosts, lo, hi)
    inputs = [HostSchedule(h.member.id, h.schedule, busy[h.member.id]) for h in hosts if h.schedule]
    params = {
        "duration_minutes": link.duration_minutes,
        "slot_interval_minutes": link.slot_interval_minutes,
        "minimum_notice_minutes": link.minimum_notice_minutes,
        "buffer_before_minutes": link.buffer_before_minutes,
        "buffer_after_minutes": link.buffer_after_minutes,
    }

    def core(now: datetime) -> list[Slot]:
        return find_slots(inputs, start_utc=start, end_utc=end, now=now, **params)

    return core


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, BUSY_COUNTS)),
        help="busy intervals per host, comma-separated",
    )
    args = parser.parse_args()
    sizes = tuple(int(n) for n in args.sizes.split(","))
    configure_logging("WARNING", json=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        if url.startswith("postgresql"):
            await _reset_postgres(url)
        await asyncio.to_thread(upgrade, url)
        settings = Settings(database_url=url, log_json=True, log_level="WARNING")
        database = Database(url)
        app = create_app(settings, database=database)
        api_key, link_id, ids = await seed(database, settings)
        gc.collect()
        gc.freeze()  # as `closerdesk serve` does once the app is built
        org_id = await _org_of(database)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, {database.dialect}, load average "
            f"{os.getloadavg()[0]:.2f}"
        )
        print(
            f"GET /v1/booking-links/{{id}}/slots: {HOSTS} hosts, {DAYS} days, 45 min every 30; "
            f"{args.runs} timed runs per case"
        )
        print(
            f"{'busy/host':>9} {'calendar':>9} {'slots':>6} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'cpu p50 ms':>10} {'p50 ratio caldav/builtin':>25} {'p50 ratio API/core':>19} "
            f"{'cpu p50 ratio API/core':>23}"
        )
        start, end = utcnow() + timedelta(days=1), utcnow() + timedelta(days=1 + DAYS)
        params = {"start": isoformat_z(start), "end": isoformat_z(end)}
        headers = {"Authorization": f"Bearer {api_key}"}
        p50s: dict[int, float] = {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for per_host in sizes:
                await set_busy(database, org_id, ids, per_host)
                url_path = f"/v1/booking-links/{link_id}/slots"
                answers: dict[str, Any] = {}
                timings: dict[str, list[float]] = {"builtin": [], "caldav": [], "core": []}
                cpu: dict[str, list[float]] = {name: [] for name in timings}
                for provider in ("builtin", "caldav"):  # warm-up, and the answers to compare
                    await use_provider(database, provider)
                    first = await client.get(url_path, params=params, headers=headers)
                    first.raise_for_status()
                    answers[provider] = first.json()["data"]
                assert answers["builtin"] == answers["caldav"], "the mirror changed the slots"
                core = await core_inputs(database, org_id, link_id, start, end)
                core_starts = [isoformat_z(s.start) for s in core(utcnow())]
                assert core_starts == [a["start"] for a in answers["builtin"]], "core differs"
                answers["core"] = core_starts
                for _ in range(args.runs):  # interleaved rounds
                    for provider, measured in timings.items():
                        if provider == "core":
                            now = utcnow()
                            began, began_cpu = time.perf_counter(), time.process_time()
                            core(now)
                            measured.append((time.perf_counter() - began) * 1000)
                            cpu[provider].append((time.process_time() - began_cpu) * 1000)
                            continue
                        await use_provider(database, provider)
                        began, began_cpu = time.perf_counter(), time.process_time()
                        response = await client.get(url_path, params=params, headers=headers)
                        measured.append((time.perf_counter() - began) * 1000)
                        cpu[provider].append((time.process_time() - began_cpu) * 1000)
                        response.raise_for_status()
                p50s[per_host] = statistics.median(timings["builtin"])
                core_p50 = statistics.median(timings["core"])
                core_cpu = statistics.median(cpu["core"])
                for provider, measured in timings.items():
                    p50, cpu_p50 = statistics.median(measured), statistics.median(cpu[provider])
                    print(
                        f"{per_host:>9} {provider:>9} {len(answers[provider]):>6} "
                        f"{p50:>8.1f} {percentile(measured, 0.95):>8.1f} {cpu_p50:>10.1f} "
                        f"{p50 / p50s[per_host]:>25.2f} {p50 / core_p50:>19.2f} "
                        f"{cpu_p50 / core_cpu:>23.2f}"
                    )
        base = p50s[sizes[0]]
        for per_host in sizes[1:]:
            print(
                f"builtin p50 ratio {per_host}/{sizes[0]}: {p50s[per_host] / base:.2f} "
                f"(busy ratio {per_host // sizes[0]})"
            )
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        await database.dispose()


async def _org_of(database: Database) -> str:
    async with database.reader() as session:
        return str((await session.execute(text("SELECT id FROM organizations"))).scalar_one())


if __name__ == "__main__":
    asyncio.run(main())

"""Benchmark: webhook delivery from the outbox on PostgreSQL (issues 3 and 10).

Not a test: it prints its figures. Run from the repository root:

    .venv/bin/python bench/webhooks.py [DATABASE_URL] [--events 5000] [--concurrency 50]

DATABASE_URL (or ``CLOSERDESK_BENCH_DATABASE_URL``) defaults to
``postgresql+asyncpg://postgres@127.0.0.1:5432/test_c``. **It drops and recreates the
``public`` schema of that database.**

A loopback receiver runs in a child process (a bare ASGI app on uvicorn answering 200 and
noting when each ``webhook-id`` arrived). In the same run:

1. *bare loops*: one ``httpx.AsyncClient`` posts the N signed bodies to the receiver, at most
   ``--concurrency`` at once — the ceiling for the dispatcher's own client; then the same with
   ``aiohttp`` (when installed), the fastest asyncio HTTP client here: how far the dispatcher
   is from what this machine can send;
2. *outbox*: N events are written to the outbox (not timed), then one in-process ``Dispatcher``
   (``--concurrency`` sends at once, batches of 100, as ``closerdesk worker``) delivers them;
   timed from its start until every delivery is recorded ``succeeded`` in the database;
3. *idle*: statements per second of an idle dispatcher over ``--idle-seconds``, counted with
   a SQLAlchemy engine event (and on PostgreSQL, transactions in ``pg_stat_database``), on
   PostgreSQL and on a SQLite file; against the poll-only dispatcher (``wake_ups=False``,
   every 0.1 s, as before issue 10) in the same run;
4. *latency*: a producer commits 50 events/s for ``--seconds`` (one transaction each, like an
   API request) while a dispatcher runs; commit-to-receipt latency is the receiver's arrival
   time minus the producer's time right after the commit; again against the poll-only one.

Targets: outbox throughput ≥ 0.85 × the bare httpx loop; p99 latency < 1 s; no statement
from an idle dispatcher on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.secrets import secret_box
from closerdesk.kit.time import utcnow
from closerdesk.migrate import upgrade
from closerdesk.models import Organization, WebhookDelivery, WebhookEvent, WebhookSubscription
from closerdesk.webhooks.dispatcher import Dispatcher, body_of, new_http_client
from closerdesk.webhooks.events import EventType
from closerdesk.webhooks.payloads import LeadCreatedData
from closerdesk.webhooks.service import record_event
from closerdesk.webhooks.signing import new_secret, signed_headers

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test_c"
NAMES_SQLITE = ("poll-only 0.1 s (before)", "woken (in-process, poll 1 s)")
LEAD = {
    "id": "lead_01BENCH",
    "email": "dana@example.com",
    "full_name": "Dana Whitfield",
    "phone": "+13125550101",
    "company": "Whitfield Dental",
    "time_zone": "America/Chicago",
    "status": "new",
    "metadata": {"utm_source": "newsletter"},
    "created_at": "2026-01-20T15:00:00Z",
    "updated_at": "2026-01-20T15:00:00Z",
}


# --- the receiver (child process) ----------------------------------------------------------------
def receiver_main(port: int) -> None:
    """A bare ASGI receiver: POST → 200 (arrival noted); GET /arrivals → {id: [times]}."""
    import uvicorn

    arrivals: dict[str, list[float]] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        body = b"ok"
        if scope["method"] == "GET":
            body = json.dumps(arrivals).encode()
            if scope["path"] == "/reset":
                arrivals.clear()
        else:
            headers = dict(scope["headers"])
            msg_id = headers.get(b"webhook-id", b"").decode()
            arrivals.setdefault(msg_id, []).append(time.time())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
        timeout_keep_alive=60,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - this script
        [sys.executable, __file__, "--receiver", str(port)]
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{base}/arrivals", timeout=1)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the receiver did not start")


async def arrivals(base: str, *, reset: bool = False) -> dict[str, list[float]]:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{base}/{'reset' if reset else 'arrivals'}")
        return dict(r.json())


# --- database ------------------------------------------------------------------------------------
async def reset_schema(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


async def setup(database: Database, settings: Settings, target: str) -> tuple[str, str]:
    async with database.writer() as s:
        org = Organization(id=new_id("org"), name="Bench")
        s.add(org)
        await s.flush()
        sub = WebhookSubscription(
            id=new_id("wh"),
            organization_id=org.id,
            target_url=target,
            event_types=[EventType.lead_created.value],
            secret=secret_box(settings).encrypt(new_secret()),
            is_active=True,
        )
        s.add(sub)
        await s.commit()
        return org.id, sub.id


async def fill_outbox(database: Database, org_id: str, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 500):
        async with database.writer() as s:
            for _ in range(min(500, count - start)):
                ids.append((await record_event(s, org_id, LeadCreatedData(lead=LEAD))).id)
            await s.commit()
    return ids


async def count_succeeded(database: Database) -> int:
    async with database.reader() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .where(WebhookDelivery.status == "succeeded")
            )
            or 0
        )


async def clear_deliveries(database: Database) -> None:
    async with database.writer() as s:
        await s.execute(text("TRUNCATE webhook_attempts, webhook_deliveries, webhook_events"))
        await s.commit()


# --- the three measurements ----------------------------------------------------------------------
async def bare_loop(
    target: str, bodies: list[tuple[str, str]], concurrency: int
) -> tuple[float, float]:
    """Deliveries per second of a plain httpx loop posting the same signed bytes; and its CPU
    time per delivery (seconds)."""
    secret = new_secret()
    semaphore = asyncio.Semaphore(concurrency)
    async with new_http_client(concurrency) as client:

        async def post(msg_id: str, body: str) -> None:
            async with semaphore:
                headers = signed_headers([secret], msg_id, utcnow(), body)
                r = await client.post(target, content=body.encode(), headers=headers)
                assert r.status_code == 200

        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(post(i, b) for i, b in bodies))
        elapsed = time.perf_counter() - started
        return len(bodies) / elapsed, (time.process_time() - cpu) / len(bodies)


async def bare_aiohttp(
    target: str, bodies: list[tuple[str, str]], concurrency: int
) -> tuple[float, float] | None:
    """The same as ``bare_loop`` with aiohttp; None when it is not installed."""
    try:
        import aiohttp
    except ImportError:
        return None
    secret = new_secret()
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def post(msg_id: str, body: str) -> None:
            async with semaphore:
                headers = signed_headers([secret], msg_id, utcnow(), body)
                async with client.post(target, data=body.encode(), headers=headers) as r:
                    await r.read()
                    assert r.status == 200

        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(post(i, b) for i, b in bodies))
        elapsed = time.perf_counter() - started
        return len(bodies) / elapsed, (time.process_time() - cpu) / len(bodies)


async def outbox(
    database: Database, settings: Settings, total: int, concurrency: int
) -> tuple[float, float]:
    """Deliveries per second of one dispatcher from a full outbox; and its CPU time per
    delivery (seconds; the claims, sends and records, plus this function's polling)."""
    dispatcher = Dispatcher(database, settings, concurrency=concurrency, batch_size=100)
    stop = asyncio.Event()
    cpu = time.process_time()
    started = time.perf_counter()
    task = asyncio.create_task(dispatcher.run(stop))
    while await count_succeeded(database) < total:  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    stop.set()
    await task
    await dispatcher.aclose()
    return total / elapsed, cpu / total


async def transactions(url: str) -> int:
    """Committed plus rolled-back transactions of the database so far (``pg_stat_database``),
    read on a connection of its own that then exits (which flushes its own statistics)."""
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        count = await conn.scalar(
            text(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
        )
    await engine.dispose()
    return int(count or 0)


async def idle(url: str, settings: Settings, seconds: float, *, wake_ups: bool) -> str:
    """What one idle dispatcher sends in ``seconds``, as a line of text."""
    database = Database(url)
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    if wake_ups:
        dispatcher = Dispatcher(database, settings)
    else:
        dispatcher = Dispatcher(database, settings, poll_interval=0.1, wake_ups=False)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    postgres = database.dialect == "postgresql"
    # Started, listening and idle; on PostgreSQL also past the 10 s after which an idle
    # backend reports its statistics (its LISTEN, the bench's earlier work).
    await asyncio.sleep(11.5 if postgres else 1.5)
    before = await transactions(url) if postgres else 0
    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    await asyncio.sleep(seconds)
    event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    stop.set()
    await task
    await dispatcher.aclose()
    await database.dispose()  # its connections exit: their statistics are flushed
    line = f"{statements / seconds:5.1f} statements/s (engine events)"
    if postgres:
        await asyncio.sleep(0.5)
        xacts = await transactions(url) - before - 1  # less the first read's own
        line += f", {xacts / seconds:5.1f} transactions/s (pg_stat_database)"
    return line


async def idle_sqlite(settings: Settings, seconds: float) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'idle.db'}"
        await asyncio.to_thread(upgrade, url)
        sqlite = settings.model_copy(update={"database_url": url})
        return [
            await idle(url, sqlite, seconds, wake_ups=False),
            await idle(url, sqlite, seconds, wake_ups=True),
        ]


async def latency(
    database: Database,
    settings: Settings,
    org_id: str,
    base: str,
    rate: float,
    seconds: float,
    *,
    wake_ups: bool = True,
) -> list[float]:
    """Commit-to-receipt latencies (seconds) at a steady ``rate`` events per second."""
    if wake_ups:
        dispatcher = Dispatcher(database, settings)
    else:
        dispatcher = Dispatcher(database, settings, poll_interval=0.1, wake_ups=False)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    committed: dict[str, float] = {}
    interval = 1 / rate
    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = started + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        async with database.writer() as s:
            event = await record_event(s, org_id, LeadCreatedData(lead=LEAD))
            await s.commit()
        committed[event.id] = time.time()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        received = await arrivals(base)
        if all(i in received for i in committed):
            break
        await asyncio.sleep(0.2)
    stop.set()
    await task
    await dispatcher.aclose()
    missing = [i for i in committed if i not in received]
    if missing:
        raise RuntimeError(f"{len(missing)} events not received within 30 s")
    return [received[i][0] - t for i, t in committed.items()]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> None:
    url = args.database_url
    settings = Settings(database_url=url, webhook_allow_private_targets=True, log_level="WARNING")
    database = Database(url)
    proc, base = start_receiver()
    try:
        target = f"{base}/hooks/bench"
        org_id, _ = await setup(database, settings, target)
        print(
            f"webhooks bench: PostgreSQL, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, {args.events} events, concurrency "
            f"{args.concurrency} for both the bare loop and the dispatcher; load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        rounds = []
        for round_ in range(1, args.rounds + 1):
            await clear_deliveries(database)
            ids = await fill_outbox(database, org_id, args.events)
            async with database.reader() as s:
                payloads = {
                    e.id: body_of(e.payload)
                    for e in await s.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(ids)))
                }
            bodies = [(i, payloads[i]) for i in ids]
            bare, bare_cpu = await bare_loop(target, bodies, args.concurrency)
            fastest = await bare_aiohttp(target, bodies, args.concurrency)
            await arrivals(base, reset=True)
            rate, cpu = await outbox(database, settings, args.events, args.concurrency)
            received = await arrivals(base, reset=True)
            lost = set(ids) - set(received)
            duplicates = sum(len(v) for v in received.values()) - len(received)
            fast, fast_cpu = fastest or (float("nan"), float("nan"))
            rounds.append((bare, rate, bare_cpu, cpu, fast, fast_cpu))
            print(
                f"round {round_}: bare httpx {bare:5.0f}/s ({bare_cpu * 1000:.2f} ms CPU each) "
                f"| bare aiohttp {fast:5.0f}/s ({fast_cpu * 1000:.2f} ms) | outbox dispatcher "
                f"{rate:5.0f}/s ({cpu * 1000:.2f} ms) | outbox/httpx {rate / bare:.2f}, "
                f"outbox/aiohttp {rate / fast:.2f} | lost {len(lost)}, duplicates {duplicates}"
            )
        bare = statistics.median(r[0] for r in rounds)
        rate = statistics.median(r[1] for r in rounds)
        fast = statistics.median(r[4] for r in rounds)
        ratio = statistics.median(r[1] / r[0] for r in rounds)
        fast_ratio = statistics.median(r[1] / r[4] for r in rounds)
        cpu_ratio = statistics.median(r[2] / r[3] for r in rounds)
        print(
            f"throughput (medians of {len(rounds)} rounds): bare httpx {bare:.0f}/s, bare "
            f"aiohttp {fast:.0f}/s, outbox {rate:.0f}/s; ratio outbox/httpx {ratio:.2f} "
            f"(target ≥ 0.85), outbox/aiohttp {fast_ratio:.2f}; CPU per delivery "
            f"httpx/outbox {cpu_ratio:.2f}"
        )
        await clear_deliveries(database)
        await database.engine.dispose()  # idle connections would report their work late
        for wake_ups in (False, True):
            name = "woken (NOTIFY)" if wake_ups else "poll-only 0.1 s (before)"
            print(f"idle dispatcher, PostgreSQL, {name}: ", end="", flush=True)
            print(await idle(url, settings, args.idle_seconds, wake_ups=wake_ups))
        lines = await idle_sqlite(settings, args.idle_seconds)
        for name, line in zip(NAMES_SQLITE, lines, strict=True):
            print(f"idle dispatcher, SQLite, {name}: {line}")
        for wake_ups in (False, True):
            await clear_deliveries(database)
            await arrivals(base, reset=True)
            latencies = await latency(
                database, settings, org_id, base, args.rate, args.seconds, wake_ups=wake_ups
            )
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            name = "woken (NOTIFY)" if wake_ups else "poll-only 0.1 s (before)"
            print(
                f"latency, {name}, at {args.rate:.0f} events/s for {args.seconds:.0f} s "
                f"({len(latencies)} events, commit → receipt): p50 {p50 * 1000:.0f} ms, "
                f"p99 {p99 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                "(target p99 < 1000 ms)"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        await database.dispose()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "database_url",
        nargs="?",
        default=os.environ.get("CLOSERDESK_BENCH_DATABASE_URL", DEFAULT_URL),
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.receiver:
        receiver_main(arguments.receiver)
    else:
        if not arguments.database_url.startswith("postgresql"):
            raise SystemExit("bench/webhooks.py measures PostgreSQL: give a postgresql+asyncpg URL")
        asyncio.run(reset_schema(arguments.database_url))
        upgrade(arguments.database_url)
        asyncio.run(main(arguments))

"""Benchmark: database round trips of each calendar-changing call operation, through the API.

Not a test: it prints its figures. Book, reassign, reschedule (same closer and new closer),
auto-reassign and cancel run in process over ASGI against built-in calendars, and the reads
``GET /v1/calls/{id}`` and ``GET /v1/calls?closer_id=…&limit=100`` (each first on a connection
that has not prepared its statement yet, then as in steady state, and the get once more with
the API key dropped from the process's cache, docs/api.md "Authentication"); engine, pool and
driver events count what reaches the database:

* statements (every cursor execute, ``BEGIN IMMEDIATE`` on SQLite included),
* transaction begins (PostgreSQL: asyncpg sends ``BEGIN``), commits and rollbacks,
* pool checkouts (no pre-ping since docs/performance.md "Read paths": a checkout alone is no
  round trip).

    .venv/bin/python bench/round_trips.py [--database-url URL] [--verbose]

The default database is a temporary SQLite file; a PostgreSQL URL is emptied (public schema
dropped and recreated) first.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from closerdesk.app import create_app
from closerdesk.auth.service import create_organization
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.logs import configure_logging
from closerdesk.migrate import upgrade
from closerdesk.models import CalendarConnection, TeamMember

CLOSERS = ("user_rta", "user_rtb", "user_rtc")


async def _reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


def category(kind: str, statement: str) -> str | None:
    """What one round trip is: ``ping``, ``prepare``, ``begin``, ``commit``, ``rollback``,
    ``savepoint``, ``lock`` (``SELECT … FOR …``), ``read`` (other ``SELECT``), ``write``; None
    for a pool checkout (no round trip: it numbers the transactions)."""
    if kind == "checkouts":
        return None
    if kind != "statements":
        return {
            "pings": "ping",
            "prepares": "prepare",
            "begins": "begin",
            "commits": "commit",
            "rollbacks": "rollback",
        }.get(kind, "read")
    words = statement.split()
    head = words[0].upper() if words else ""
    if head in {"SAVEPOINT", "RELEASE"} or statement.upper().startswith("ROLLBACK TO"):
        return "savepoint"
    if head in {"BEGIN", "COMMIT"}:
        return head.lower()
    if head == "SELECT":
        return "lock" if " FOR UPDATE" in statement or " FOR NO KEY UPDATE" in statement else "read"
    return "write"


CATEGORIES = (
    "ping",
    "prepare",
    "begin",
    "lock",
    "read",
    "write",
    "savepoint",
    "commit",
    "rollback",
)


class CountingConnection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection, counting what it sends besides prepared statements' executions
    (those are the engine's statements): simple queries (``BEGIN``, ``COMMIT``,
    ``ROLLBACK``), statements prepared (a round trip each, once per connection), pings."""

    counter: RoundTrips | None = None

    def _count(self, name: str) -> None:
        if CountingConnection.counter is not None:
            CountingConnection.counter.count(name, name)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        word = query.split()[0].rstrip(";").upper() if query.strip() else "EMPTY"
        self._count(
            {"BEGIN": "begins", "COMMIT": "commits", "ROLLBACK": "rollbacks"}.get(
                word, "simple queries"
            )
        )
        return await super().execute(query, *args, **kwargs)

    async def prepare(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._count("prepares")
        return await super().prepare(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._count("pings" if query == ";" else "simple queries")
        return await super().fetchrow(query, *args, **kwargs)


class RoundTrips:
    """Counts what the engine sends while ``active``: on PostgreSQL what asyncpg sends
    (``CountingConnection``), on SQLite every cursor execute (``BEGIN IMMEDIATE`` included);
    ``log`` keeps each round trip as (pool checkout number, category, statement) for the split
    by transaction."""

    def __init__(self, database: Database) -> None:
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[int, str, str]] = []
        self.active = False
        self.verbose = False
        self.postgres = database.dialect == "postgresql"
        sync = database.engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._on("statements"))
        if self.postgres:
            CountingConnection.counter = self
        else:
            event.listen(sync, "commit", self._on("commits"))
            event.listen(sync, "rollback", self._on("rollbacks"))
        event.listen(sync.pool, "checkout", self._on("checkouts"))

    def count(self, name: str, what: object) -> None:
        if self.active:
            self.counts[name] += 1
            statement = str(what) if name == "statements" else ""
            kind = category(name, statement)
            if kind is not None:
                self.log.append((self.counts["checkouts"], kind, statement))
            if self.verbose:
                print(f"    {' '.join(str(what).split())[:110]}")

    def _on(self, name: str) -> Callable[..., None]:
        def count(*args: Any, **_kwargs: Any) -> None:
            self.count(name, args[2] if name == "statements" else name)

        return count

    async def measure(self, action: Callable[[], Awaitable[None]]) -> Counter[str]:
        self.counts = Counter()
        self.log = []
        self.active = True
        try:
            await action()
        finally:
            self.active = False
        return self.counts

    def split(self) -> tuple[Counter[str], Counter[str], Counter[str]]:
        """The last measured request's round trips by category: the whole request, the API-key
        lookup's own transaction (a pool checkout whose statements read only ``api_keys``),
        and everything else: the operation's own transaction (pings excluded from both)."""
        whole: Counter[str] = Counter(kind for _, kind, _ in self.log)
        by_checkout: dict[int, list[tuple[str, str]]] = {}
        for checkout, kind, statement in self.log:
            if kind != "ping":
                by_checkout.setdefault(checkout, []).append((kind, statement))
        auth: Counter[str] = Counter()
        own: Counter[str] = Counter()
        for trips in by_checkout.values():
            statements = [s for kind, s in trips if kind in {"lock", "read", "write"}]
            is_auth = bool(statements) and all("FROM api_keys" in s for s in statements)
            (auth if is_auth else own).update(kind for kind, _ in trips)
        return whole, auth, own

    def total(self, counts: Counter[str]) -> int:
        return sum(v for k, v in counts.items() if k != "checkouts")


async def main(url: str, verbose: bool) -> None:
    settings = Settings(database_url=url, env="test", log_json=True)
    connect_args = {"connection_class": CountingConnection} if url.startswith("postgres") else {}
    database = Database(url, connect_args=connect_args)
    async with database.writer() as session:
        org, key = await create_organization(session, secret_key=settings.secret_key, name="rt")
        for member_id in CLOSERS:
            session.add(
                TeamMember(
                    organization_id=org.id,
                    id=member_id,
                    name=member_id,
                    email=f"{member_id}@example.com",
                    role="closer",
                    time_zone="UTC",
                    is_active=True,
                )
            )
            await session.flush()  # the connection's foreign key needs the member first
            session.add(
                CalendarConnection(
                    id=f"cal_{member_id}",
                    organization_id=org.id,
                    member_id=member_id,
                    provider="builtin",
                    provider_grant_id=f"cal_{member_id}",
                    calendar_id=f"builtin:{member_id}",
                    status="valid",
                )
            )
        await session.commit()
    app = create_app(settings, database=database)
    headers = {"Authorization": f"Bearer {key.api_key}"}
    counter = RoundTrips(database)
    counter.verbose = verbose
    start = utcnow().replace(microsecond=0) + timedelta(days=3)
    rows: list[tuple[str, Counter[str]]] = []
    splits: dict[str, tuple[Counter[str], Counter[str], Counter[str]]] = {}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://rt") as client,
    ):

        async def post(path: str, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
            response = await client.post(path, json=body, headers=headers)
            assert response.status_code == expect, response.text
            data: dict[str, Any] = response.json()["data"]
            return data

        call: dict[str, Any] = {}

        async def book() -> None:
            body = {
                "closer_id": CLOSERS[0],
                "scheduled_at": isoformat_z(start),
                "duration_minutes": 45,
                "lead": {"email": "lead@example.com", "full_name": "Lee Lead"},
            }
            call.update(await post("/v1/calls", body, 201))

        async def reassign() -> None:
            body = {"new_closer_id": CLOSERS[1]}
            await post(f"/v1/calls/{call['id']}/reassign-closer", body)

        async def reschedule() -> None:
            later = isoformat_z(start + timedelta(hours=2))
            await post(f"/v1/calls/{call['id']}/reschedule", {"scheduled_at": later})

        async def reschedule_new_closer() -> None:
            later = isoformat_z(start + timedelta(hours=4))
            body = {"scheduled_at": later, "new_closer_id": CLOSERS[2]}
            await post(f"/v1/calls/{call['id']}/reschedule", body)

        async def auto_reassign() -> None:
            await post(f"/v1/calls/{call['id']}/auto-reassign", {})

        async def cancel() -> None:
            await post(f"/v1/calls/{call['id']}/cancel", {})

        async def get_call_uncached() -> None:
            app.state.key_cache.clear()  # as the first request of a key in a process
            await get_call()

        async def get_call() -> None:
            response = await client.get(f"/v1/calls/{call['id']}", headers=headers)
            assert response.status_code == 200, response.text

        async def list_calls() -> None:
            response = await client.get(
                "/v1/calls", params={"closer_id": CLOSERS[0], "limit": 100}, headers=headers
            )
            assert response.status_code == 200, response.text

        for name, action in (
            ("book", book),
            ("get (first)", get_call),
            ("get", get_call),
            ("get (key not cached)", get_call_uncached),
            ("list (first)", list_calls),
            ("list", list_calls),
            ("reassign", reassign),
            ("reschedule", reschedule),
            ("reschedule + new closer", reschedule_new_closer),
            ("auto-reassign", auto_reassign),
            ("cancel", cancel),
        ):
            if verbose:
                print(name)
            rows.append((name, await counter.measure(action)))
            splits[name] = counter.split()
    await database.dispose()

    print(f"database: {database.dialect}")
    print(
        f"{'operation':<26}{'round trips':>12}{'statements':>12}{'begins':>8}{'commits':>9}"
        f"{'prepares':>10}{'checkouts':>11}"
    )
    for name, counts in rows:
        print(
            f"{name:<26}{counter.total(counts):>12}{counts['statements']:>12}"
            f"{counts['begins']:>8}{counts['commits']:>9}{counts['prepares']:>10}"
            f"{counts['checkouts']:>11}"
        )
    print()
    print("round trips by category (whole request = pings + API-key lookup + own transaction)")
    print(f"{'operation':<26}{'part':<12}" + "".join(f"{c:>10}" for c in CATEGORIES) + "     total")
    for name in ("reassign", "auto-reassign", "reschedule + new closer"):
        for part, counts in zip(("whole", "auth", "own"), splits[name], strict=True):
            cells = "".join(f"{counts[c]:>10}" for c in CATEGORIES)
            print(f"{name:<26}{part:<12}{cells}{sum(counts.values()):>10}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--verbose", action="store_true", help="print every statement")
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'rt.db'}"
        if url.startswith("postgresql"):
            asyncio.run(_reset_postgres(url))
        upgrade(url)
        asyncio.run(main(url, args.verbose))

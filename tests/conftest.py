"""Test fixtures: the real Alembic migrations on SQLite (default) or PostgreSQL.

Set ``CLOSERDESK_TEST_DATABASE_URL=postgresql+asyncpg://…`` to run the same suite on
PostgreSQL. Every test starts from empty tables.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from closerdesk.app import create_app
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.statements import forget_built_statements
from closerdesk.logs import configure_logging
from closerdesk.migrate import upgrade
from closerdesk.models import Base
from closerdesk.providers import Providers, default_providers
from tests.factories import Org, create_org

PUBLIC_BASE_URL = "http://closerdesk.test"

# Plain JSON lines: the default console renderer draws every 500's traceback with locals.
configure_logging("WARNING", json=True)


def _database_url(tmp_dir: Path) -> str:
    return os.environ.get(
        "CLOSERDESK_TEST_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_dir / 'closerdesk-test.db'}"
    )


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        url = _database_url(Path(tmp))
        if url.startswith("postgresql"):
            import asyncio

            async def reset() -> None:
                engine = create_async_engine(url)
                async with engine.begin() as conn:
                    await conn.execute(text("DROP SCHEMA public CASCADE"))
                    await conn.execute(text("CREATE SCHEMA public"))
                await engine.dispose()

            asyncio.run(reset())
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        env="test",
        public_base_url=PUBLIC_BASE_URL,
        jitsi_base_url="https://meet.example.test",
        log_json=False,
        # The suite makes many requests with one key from one address; tests/test_rate_limits.py
        # sets its own low limits.
        rate_limit_per_key="1000000/minute",
        rate_limit_per_org="1000000/minute",
        rate_limit_auth_failures="1000000/minute",
        rate_limit_per_address="1000000/minute",
    )


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings.database_url)
    yield db
    await db.dispose()


@pytest.fixture(autouse=True)
def _build_statements_anew() -> None:
    """Each test builds the statements it runs (``closerdesk.kit.statements``): what a test
    checks covers how its statements are built, and mutation testing sees which tests do."""
    forget_built_statements()


@pytest.fixture(autouse=True)
async def _empty_tables(database: Database) -> AsyncIterator[None]:
    yield
    # DELETE, children first: on tables this small it is many times faster than TRUNCATE,
    # which takes an exclusive lock and rewrites every table on PostgreSQL.
    async with database.writer() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
        await session.commit()


@pytest.fixture
def providers(settings: Settings) -> Providers:
    """The providers the app uses; tests replace it to inject failures."""
    return default_providers(settings)


@pytest.fixture
def app(settings: Settings, database: Database, providers: Providers):  # type: ignore[no-untyped-def]
    return create_app(settings, database=database, providers=providers)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    """A session for arranging data directly; commit what a test should see."""
    async with database.writer() as s:
        yield s


@pytest.fixture
async def org(database: Database, settings: Settings) -> Org:
    """An organization with keys of every scope."""
    return await create_org(database, settings, "Acme Closers")


@pytest.fixture
async def other_org(database: Database, settings: Settings) -> Org:
    """A second organization, for cross-organization probes."""
    return await create_org(database, settings, "Other Co")

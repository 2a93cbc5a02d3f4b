"""The command line fails with one clear line and a non-zero status, never a traceback: an
unmigrated or missing database (no empty SQLite file left behind), a URL that does not parse or
a server that does not answer, an unknown id, an empty name, production with a weak secret
(docs/architecture.md, "Command line")."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner, Result

from closerdesk.cli import app
from closerdesk.config import DEFAULT_SECRET_KEY, Settings, get_settings

STRONG_SECRET = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
KEY = Fernet.generate_key().decode()

# Every command that opens the database (the worker only ever reaches its check here).
DATABASE_COMMANDS = [
    ["org", "create", "Acme"],
    ["apikey", "create", "--org", "org_missing"],
    ["apikey", "revoke", "key_missing"],
    ["keys", "rotate"],
    ["worker"],
]
IDS = ["org-create", "apikey-create", "apikey-revoke", "keys-rotate", "worker"]


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def run(database_url: str, *args: str, **env: str) -> Result:
    """The CLI in a thread (it runs its own event loop), settings read afresh."""
    environment = {
        "CLOSERDESK_DATABASE_URL": database_url,
        "CLOSERDESK_ENCRYPTION_KEYS": KEY,
        "CLOSERDESK_ENV": "test",
        **env,
    }
    get_settings.cache_clear()
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environment)


def one_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1, result.output
    return result.output.strip()


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=IDS)
async def test_a_missing_sqlite_file_is_one_line_and_is_not_created(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "nowhere.db"
    line = one_line(await run(f"sqlite+aiosqlite:///{path}", *command))
    assert line == f"no database at {path}: run `closerdesk db upgrade` to create it"
    assert not path.exists()


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=IDS)
async def test_an_unmigrated_database_is_one_line(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # the file exists, the schema does not
    line = one_line(await run(f"sqlite+aiosqlite:///{path}", *command))
    assert line == "the database has no schema: run `closerdesk db upgrade` first"


async def test_a_database_behind_the_newest_migration_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    assert (await run(url, "db", "upgrade", "--revision", "0001")).exit_code == 0
    line = one_line(await run(url, "org", "create", "Acme"))
    assert line.startswith("the database is at revision 0001")
    assert line.endswith("run `closerdesk db upgrade` first")


@pytest.mark.parametrize(
    ("url", "start"),
    [
        ("nonsense", "CLOSERDESK_DATABASE_URL is not a database URL"),
        ("nodriver+nothing://x/y", "the database failed (NoSuchModuleError"),
        ("postgresql+asyncpg://closerdesk@127.0.0.1:9/closerdesk", "the database failed ("),
    ],
    ids=["not-a-url", "no-driver", "refused"],
)
@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=IDS)
async def test_a_bad_or_unreachable_database_url_is_one_line(
    url: str, start: str, command: list[str]
) -> None:
    assert one_line(await run(url, *command)).startswith(start)


@pytest.mark.parametrize(
    "url", ["nonsense", "postgresql+asyncpg://closerdesk@127.0.0.1:9/closerdesk"]
)
async def test_db_upgrade_with_a_bad_database_url_is_one_line(url: str) -> None:
    assert one_line(await run(url, "db", "upgrade")).startswith("the database failed (")


async def test_unknown_ids_are_one_line(settings: Settings) -> None:
    url = settings.database_url
    line = one_line(await run(url, "apikey", "create", "--org", "org_missing"))
    assert line == "no organization org_missing"
    assert one_line(await run(url, "apikey", "revoke", "key_missing")) == "no live key key_missing"


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
async def test_org_create_refuses_an_empty_or_overlong_name(settings: Settings, name: str) -> None:
    line = one_line(await run(settings.database_url, "org", "create", name))
    assert line == "the organization name must be 1 to 200 characters"


async def test_org_create_still_creates(settings: Settings) -> None:
    result = await run(settings.database_url, "org", "create", "  Acme  ", "--json")
    assert result.exit_code == 0, result.output
    assert '"api_key": "cdk_' in result.output


@pytest.mark.parametrize("secret", [DEFAULT_SECRET_KEY, "x", "s" * 64])
@pytest.mark.parametrize("command", [["org", "create", "Acme"], ["worker"]], ids=["org", "worker"])
async def test_production_refuses_a_default_or_weak_secret(
    settings: Settings, secret: str, command: list[str]
) -> None:
    result = await run(
        settings.database_url,
        *command,
        CLOSERDESK_ENV="production",
        CLOSERDESK_SECRET_KEY=secret,
    )
    assert "CLOSERDESK_SECRET_KEY" in one_line(result)


async def test_production_org_create_runs_with_a_strong_secret(settings: Settings) -> None:
    result = await run(
        settings.database_url,
        "org",
        "create",
        "Acme",
        CLOSERDESK_ENV="production",
        CLOSERDESK_SECRET_KEY=STRONG_SECRET,
    )
    assert result.exit_code == 0, result.output


async def test_serve_help_shows_demo_as_a_flag() -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["serve", "--help"], env={"COLUMNS": "120"}
    )
    assert result.exit_code == 0
    demo = next(line for line in result.output.splitlines() if "--demo" in line)
    assert "<bool>" not in demo
    assert "<bool>" not in result.output

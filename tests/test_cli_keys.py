"""``closerdesk keys generate|rotate``: a fresh key; every stored secret moved to the first key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner, Result

from closerdesk.calendars.credentials import seal_credentials
from closerdesk.cli import app
from closerdesk.config import Settings, get_settings
from closerdesk.db import Database
from closerdesk.kit.secrets import SecretBox, secret_box
from tests.factories import Org, create_member

NEW = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def invoke(settings: Settings, keys: str, *args: str) -> Result:
    """The CLI against the suite's database, with ``keys`` as CLOSERDESK_ENCRYPTION_KEYS
    (in a thread: it runs its own event loop)."""
    return await invoke_env(settings, keys, "test", *args)


async def invoke_env(settings: Settings, keys: str, env: str, *args: str) -> Result:
    environment = {
        "CLOSERDESK_DATABASE_URL": settings.database_url,
        "CLOSERDESK_ENCRYPTION_KEYS": keys,
        "CLOSERDESK_ENV": env,
    }
    get_settings.cache_clear()  # the CLI reads them once per process
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environment)


async def stored(database: Database) -> list[str]:
    """Every token stored, in a stable order (plain SQL)."""
    async with database.reader() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT secret AS token FROM webhook_subscriptions "
                    "UNION ALL SELECT previous_secret FROM webhook_subscriptions "
                    "UNION ALL SELECT credentials FROM calendar_connections"
                )
            )
        ).all()
    return sorted(row.token for row in rows if row.token is not None)


async def test_generate_prints_a_fresh_fernet_key(settings: Settings) -> None:
    result = await invoke(settings, NEW, "keys", "generate")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key != NEW
    assert SecretBox([key]).decrypt(SecretBox([key]).encrypt("x")) == "x"


async def test_rotate_moves_every_secret_to_the_first_key(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    database: Database,
    settings: Settings,
) -> None:
    old = settings.encryption_keys.get_secret_value()
    body = {"target_url": "https://1.1.1.1/hook", "event_types": ["lead.created"]}
    r = await client.post("/v1/webhooks", headers=org.headers, json=body)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/webhooks/{r.json()['data']['id']}/rotate-secret", headers=org.headers
    )
    assert r.status_code == 200, r.text
    member = await create_member(session, org)
    await create_member(session, org)  # builtin: no credentials
    await session.execute(
        text("UPDATE calendar_connections SET credentials = :token WHERE member_id = :member"),
        {"token": seal_credentials(secret_box(settings), {"password": "p"}), "member": member.id},
    )
    await session.commit()
    before = await stored(database)
    assert len(before) == 3

    # The new key alone cannot open them yet: rotate stops, nothing changed.
    result = await invoke(settings, NEW, "keys", "rotate")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "cannot be decrypted with any key in CLOSERDESK_ENCRYPTION_KEYS" in result.output
    assert "nothing was re-encrypted" in result.output
    assert await stored(database) == before

    result = await invoke(settings, f"{NEW},{old}", "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "re-encrypted 3 secrets under the first key (0 already were)"
    after = await stored(database)
    new_only = SecretBox([NEW])
    assert all(new_only.is_current(token) for token in after)
    assert sorted(new_only.decrypt(t) for t in after) == sorted(
        SecretBox([old]).decrypt(t) for t in before
    )

    result = await invoke(settings, f"{NEW},{old}", "keys", "rotate")
    assert result.stdout.strip() == "re-encrypted 0 secrets under the first key (3 already were)"


@pytest.mark.parametrize(
    ("keys", "env", "message"),
    [
        ("nonsense", "test", "CLOSERDESK_ENCRYPTION_KEYS: key 1 of 1 is not a Fernet key"),
        ("", "test", "CLOSERDESK_ENCRYPTION_KEYS is empty"),
        ("", "production", "CLOSERDESK_ENCRYPTION_KEYS must hold your own Fernet key"),
    ],
)
async def test_rotate_errors_are_one_clear_line(
    settings: Settings, keys: str, env: str, message: str
) -> None:
    environment = {
        "CLOSERDESK_DATABASE_URL": settings.database_url,
        "CLOSERDESK_ENCRYPTION_KEYS": keys,
        "CLOSERDESK_ENV": env,
    }
    result = await asyncio.to_thread(CliRunner().invoke, app, ["keys", "rotate"], env=environment)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert message in result.output
    assert result.output.count("\n") == 1


async def test_rotate_reports_a_database_failure_in_one_line(settings: Settings) -> None:
    nowhere = "postgresql+asyncpg://closerdesk@127.0.0.1:9/closerdesk"  # discard port: refused
    result = await invoke(
        settings.model_copy(update={"database_url": nowhere}), NEW, "keys", "rotate"
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.startswith("the database failed (")
    assert result.output.endswith("nothing was re-encrypted\n")
    assert result.output.count("\n") == 1


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_serve_and_worker_refuse_production_without_a_key_in_one_line(
    settings: Settings, command: str
) -> None:
    """Before anything is migrated or served: one line naming the variable, no traceback."""
    environment = {
        "CLOSERDESK_DATABASE_URL": settings.database_url,
        "CLOSERDESK_ENV": "production",
        "CLOSERDESK_SECRET_KEY": "0123456789abcdef" * 4,
    }
    get_settings.cache_clear()
    result = await asyncio.to_thread(CliRunner().invoke, app, [command], env=environment)
    assert result.exit_code == 1, result.output
    assert "CLOSERDESK_ENCRYPTION_KEYS" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one sentence, maybe wrapped

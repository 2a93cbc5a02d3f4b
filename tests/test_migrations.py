"""The migrations: in step with the models (``alembic check``), and 0005 encrypting the
secrets already stored (and decrypting them again on the way down), on both databases."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from closerdesk.config import DEFAULT_ENCRYPTION_KEY, Settings
from closerdesk.kit.secrets import SecretBox
from closerdesk.migrate import alembic_config, downgrade, upgrade

KEY = Fernet.generate_key().decode()
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
CALDAV = {"url": "https://dav.example.test/", "username": "ana", "password": "hunter2"}
TABLES = (
    "organizations",
    "team_members",
    "calendar_connections",
    "calendar_events",
    "webhook_subscriptions",
    "webhook_events",
    "webhook_deliveries",
)

# The tables as revision 0004 has them (plain SQL on their columns, no ORM).
meta = sa.MetaData()
organizations = sa.Table(
    "organizations",
    meta,
    sa.Column("id", sa.String),
    sa.Column("name", sa.String),
    sa.Column("is_demo", sa.Boolean),
    sa.Column("created_at", sa.DateTime(timezone=True)),
)
members = sa.Table(
    "team_members",
    meta,
    *(sa.Column(name, sa.String) for name in ("organization_id", "id", "name", "email", "role")),
    sa.Column("time_zone", sa.String),
    sa.Column("is_active", sa.Boolean),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
connections = sa.Table(
    "calendar_connections",
    meta,
    *(
        sa.Column(name, sa.String)
        for name in ("id", "organization_id", "member_id", "provider", "provider_grant_id")
    ),
    sa.Column("calendar_id", sa.String),
    sa.Column("status", sa.String),
    sa.Column("credentials", JSON),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
events = sa.Table(
    "calendar_events",
    meta,
    *(sa.Column(name, sa.String) for name in ("id", "organization_id", "connection_id", "title")),
    *(sa.Column(name, sa.String) for name in ("description", "location", "status")),
    *(
        sa.Column(name, sa.DateTime(timezone=True))
        for name in ("starts_at", "ends_at", "created_at", "updated_at")
    ),
)
subscriptions = sa.Table(
    "webhook_subscriptions",
    meta,
    *(sa.Column(name, sa.String) for name in ("id", "organization_id", "target_url")),
    sa.Column("event_types", JSON),
    sa.Column("secret", sa.String),
    sa.Column("previous_secret", sa.String),
    sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True)),
    sa.Column("is_active", sa.Boolean),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
webhook_events = sa.Table(
    "webhook_events",
    meta,
    *(sa.Column(name, sa.String) for name in ("id", "organization_id", "type")),
    sa.Column("payload", JSON),
    sa.Column("created_at", sa.DateTime(timezone=True)),
)
deliveries = sa.Table(
    "webhook_deliveries",
    meta,
    *(
        sa.Column(name, sa.String)
        for name in ("id", "organization_id", "subscription_id", "event_id", "event_type")
    ),
    sa.Column("status", sa.String),
    sa.Column("attempt_count", sa.Integer),
    *(
        sa.Column(name, sa.DateTime(timezone=True))
        for name in ("next_attempt_at", "created_at", "updated_at")
    ),
)


def _run(url: str, work: Any) -> Any:
    async def go() -> Any:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                return await connection.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture
def scratch_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the suite's kind: a SQLite file, or a PostgreSQL database made
    for this test (next to the suite's, dropped afterwards)."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'scratch.db'}"
        return
    url = make_url(database_url)
    name = f"{url.database}_scratch_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_the_migrations_match_the_models(database_url: str) -> None:
    """``alembic check``: nothing to autogenerate between the models and the migrated schema."""
    command.check(alembic_config(database_url))


def _fill_at_0004(connection: sa.Connection) -> None:
    stamps = {"created_at": NOW, "updated_at": NOW}
    connection.execute(
        organizations.insert(),
        [{"id": "org_1", "name": "Acme", "is_demo": False, "created_at": NOW}],
    )
    connection.execute(
        members.insert(),
        [
            {
                "organization_id": "org_1",
                "id": member,
                "name": member,
                "email": f"{member}@example.test",
                "role": "closer",
                "time_zone": "UTC",
                "is_active": True,
                **stamps,
            }
            for member in ("user_a", "user_b")
        ],
    )
    connection.execute(
        connections.insert(),
        [
            {
                "id": f"cal_{member}",
                "organization_id": "org_1",
                "member_id": member,
                "provider": provider,
                "provider_grant_id": f"cal_{member}",
                "calendar_id": f"{provider}:{member}",
                "status": "valid",
                "credentials": credentials,
                **stamps,
            }
            for member, provider, credentials in (
                ("user_a", "builtin", {}),
                ("user_b", "caldav", CALDAV),
            )
        ],
    )
    connection.execute(
        events.insert(),
        [
            {
                "id": "evt_1",
                "organization_id": "org_1",
                "connection_id": "cal_user_a",
                "title": "A call",
                "description": "",
                "location": "",
                "status": "confirmed",
                "starts_at": NOW,
                "ends_at": NOW,
                **stamps,
            }
        ],
    )
    connection.execute(
        subscriptions.insert(),
        [
            {
                "id": "wh_1",
                "organization_id": "org_1",
                "target_url": "https://hooks.example.test/1",
                "event_types": ["lead.created"],
                "secret": "whsec_current1",
                "previous_secret": "whsec_previous1",
                "previous_secret_expires_at": NOW,
                "is_active": True,
                **stamps,
            },
            {
                "id": "wh_2",
                "organization_id": "org_1",
                "target_url": "https://hooks.example.test/2",
                "event_types": ["lead.created"],
                "secret": "whsec_current2",
                "previous_secret": None,
                "previous_secret_expires_at": None,
                "is_active": True,
                **stamps,
            },
        ],
    )
    connection.execute(
        webhook_events.insert(),
        [
            {
                "id": "msg_1",
                "organization_id": "org_1",
                "type": "lead.created",
                "payload": {"id": "msg_1"},
                "created_at": NOW,
            }
        ],
    )
    connection.execute(
        deliveries.insert(),
        [
            {
                "id": f"dlv_{sub}",
                "organization_id": "org_1",
                "subscription_id": sub,
                "event_id": "msg_1",
                "event_type": "lead.created",
                "status": "pending",
                "attempt_count": 0,
                "next_attempt_at": NOW,
                **stamps,
            }
            for sub in ("wh_1", "wh_2")
        ],
    )


def _counts(connection: sa.Connection) -> dict[str, int]:
    return {
        table: int(connection.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
        for table in TABLES
    }


def _secrets(connection: sa.Connection) -> dict[str, Any]:
    """Each secret and credential column as stored, by row id (plain SQL)."""
    out: dict[str, Any] = {}
    for row in connection.execute(
        sa.text("SELECT id, secret, previous_secret FROM webhook_subscriptions ORDER BY id")
    ):
        out[row.id] = (row.secret, row.previous_secret)
    for row in connection.execute(
        sa.text("SELECT id, credentials FROM calendar_connections ORDER BY id")
    ):
        out[row.id] = row.credentials
    return out


def test_0005_encrypts_what_is_stored_and_the_downgrade_gives_it_back(scratch_url: str) -> None:
    settings = Settings(database_url=scratch_url, env="test", encryption_keys=SecretStr(KEY))
    upgrade(scratch_url, "0004", settings=settings)
    _run(scratch_url, _fill_at_0004)
    before = _run(scratch_url, _counts)

    upgrade(scratch_url, "0005", settings=settings)
    assert _run(scratch_url, _counts) == before
    stored = _run(scratch_url, _secrets)
    box = SecretBox([KEY])
    current, previous = stored["wh_1"]
    assert "whsec" not in current + previous
    assert (box.decrypt(current), box.decrypt(previous)) == ("whsec_current1", "whsec_previous1")
    assert box.decrypt(stored["wh_2"][0]) == "whsec_current2"
    assert stored["wh_2"][1] is None
    assert stored["cal_user_a"] is None  # ``{}``: no credentials
    assert "hunter2" not in stored["cal_user_b"]
    assert box.decrypt_json(stored["cal_user_b"]) == CALDAV
    with pytest.raises(Exception, match="cannot be decrypted"):
        SecretBox([DEFAULT_ENCRYPTION_KEY]).decrypt(current)

    downgrade(scratch_url, "0004", settings=settings)
    assert _run(scratch_url, _counts) == before
    stored = _run(scratch_url, _secrets)
    assert stored["wh_1"] == ("whsec_current1", "whsec_previous1")
    assert stored["wh_2"] == ("whsec_current2", None)
    as_json = {
        k: v if isinstance(v, dict) else json.loads(v)
        for k, v in stored.items()
        if k.startswith("cal_")
    }
    assert as_json == {"cal_user_a": {}, "cal_user_b": CALDAV}

    upgrade(scratch_url, "head", settings=settings)  # and up again
    assert _run(scratch_url, _counts) == before
    assert box.decrypt(_run(scratch_url, _secrets)["wh_1"][0]) == "whsec_current1"


def test_0005_reads_the_keys_from_the_environment(
    scratch_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOSERDESK_ENCRYPTION_KEYS", f"{KEY},{DEFAULT_ENCRYPTION_KEY}")
    upgrade(scratch_url, "0004")
    _run(scratch_url, _fill_at_0004)
    upgrade(scratch_url, "0005")
    current, _ = _run(scratch_url, _secrets)["wh_1"]
    assert SecretBox([KEY]).decrypt(current) == "whsec_current1"


def test_0005_refuses_production_with_the_development_key(scratch_url: str) -> None:
    settings = Settings(database_url=scratch_url, env="production", secret_key="real")
    upgrade(scratch_url, "0004", settings=settings)
    with pytest.raises(RuntimeError, match=r"^CLOSERDESK_ENCRYPTION_KEYS must hold your own"):
        upgrade(scratch_url, "0005", settings=settings)


def _fill_at_0013(connection: sa.Connection) -> None:
    """A closer whose declined call's slot was booked again, and a pending call (plain SQL)."""
    connection.execute(
        organizations.insert().values(id="org_1", name="Acme", is_demo=False, created_at=NOW)
    )
    connection.execute(
        members.insert().values(
            organization_id="org_1",
            id="user_a",
            name="Ana",
            email="ana@example.com",
            role="closer",
            time_zone="UTC",
            is_active=True,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    connection.execute(
        sa.text(
            "INSERT INTO leads (id, organization_id, email, status, metadata, created_at,"
            " updated_at) VALUES ('lead_1', 'org_1', 'lee@example.com', 'new', '{}', :now, :now)"
        ),
        {"now": NOW},
    )
    start, end = datetime(2027, 1, 5, 15, tzinfo=UTC), datetime(2027, 1, 5, 16, tzinfo=UTC)
    for call_id, status, starts_at in (
        ("call_declined", "declined", start),
        ("call_rebooked", "scheduled", start),
        ("call_pending", "pending", end),
    ):
        connection.execute(
            sa.text(
                "INSERT INTO calls (id, organization_id, call_kind, status, lead_id, closer_id,"
                " scheduled_at, ends_at, duration_minutes, action_items, form_data,"
                " reschedule_count, sequence, declined_at, decline_reason, created_at, updated_at)"
                " VALUES (:id, 'org_1', 'booking', :status, 'lead_1', 'user_a', :start,"
                " :end, 60, '[]', '[]', 0, 0, :declined_at, :reason, :now, :now)"
            ),
            {
                "id": call_id,
                "status": status,
                "start": starts_at,
                "end": starts_at + (end - start),
                "declined_at": NOW if status == "declined" else None,
                "reason": "Not a fit" if status == "declined" else None,
                "now": NOW,
            },
        )


def _fill_0013_history_and_webhooks(connection: sa.Connection) -> None:
    """History rows and webhooks of the kinds 0013 added (calls from ``_fill_at_0013``)."""
    stamps = {"created_at": NOW, "updated_at": NOW}
    for event_id, kind in (("cev_1", "declined"), ("cev_2", "confirmed"), ("cev_3", "booked")):
        connection.execute(
            sa.text(
                "INSERT INTO call_events (id, organization_id, call_id, type, actor_type,"
                " actor_id, before, after, created_at)"
                " VALUES (:id, 'org_1', 'call_declined', :type, 'api_key', 'key_1', '{}', '{}',"
                " :now)"
            ),
            {"id": event_id, "type": kind, "now": NOW},
        )
    connection.execute(
        subscriptions.insert(),
        [
            {
                "id": f"wh_{n}",
                "organization_id": "org_1",
                "target_url": f"https://hooks.example.test/{n}",
                "event_types": types,
                "secret": "whsec_x",
                "previous_secret": None,
                "previous_secret_expires_at": None,
                "is_active": True,
                **stamps,
            }
            for n, types in ((1, ["call.declined", "call.booked"]), (2, ["call.confirmed"]))
        ],
    )
    connection.execute(
        webhook_events.insert(),
        [
            {"id": msg, "organization_id": "org_1", "type": kind, "payload": {}, "created_at": NOW}
            for msg, kind in (("msg_1", "call.declined"), ("msg_2", "call.booked"))
        ],
    )
    connection.execute(
        deliveries.insert(),
        [
            {
                "id": f"dlv_{msg}",
                "organization_id": "org_1",
                "subscription_id": "wh_1",
                "event_id": msg,
                "event_type": kind,
                "status": "pending",
                "attempt_count": 0,
                "next_attempt_at": NOW,
                **stamps,
            }
            for msg, kind in (("msg_1", "call.declined"), ("msg_2", "call.booked"))
        ],
    )


def _history_and_webhooks(connection: sa.Connection) -> dict[str, Any]:
    def rows(sql: str) -> list[Any]:
        return [tuple(r) for r in connection.execute(sa.text(sql))]

    subs = {
        r.id: (json.loads(r.event_types) if isinstance(r.event_types, str) else r.event_types,
               r.is_active)
        for r in connection.execute(
            sa.text("SELECT id, event_types, is_active FROM webhook_subscriptions")
        )
    }  # fmt: skip
    return {
        "history": rows("SELECT id, type FROM call_events ORDER BY id"),
        "events": rows("SELECT id FROM webhook_events ORDER BY id"),
        "deliveries": rows("SELECT id FROM webhook_deliveries ORDER BY id"),
        "subscriptions": subs,
    }


def test_0013_downgrades_declined_and_pending_calls_to_what_0012_knows(scratch_url: str) -> None:
    """A declined call whose slot was booked again would break 0011's constraint (it counted
    every call but cancelled ones): the downgrade makes it cancelled, and pending scheduled;
    history and webhooks of the new kinds become what 0012 can read."""
    settings = Settings(database_url=scratch_url, env="test", encryption_keys=SecretStr(KEY))
    upgrade(scratch_url, "head", settings=settings)
    _run(scratch_url, _fill_at_0013)
    _run(scratch_url, _fill_0013_history_and_webhooks)
    downgrade(scratch_url, "0012", settings=settings)

    def statuses(connection: sa.Connection) -> dict[str, tuple[str, str | None]]:
        rows = connection.execute(sa.text("SELECT id, status, cancel_reason FROM calls"))
        return {row.id: (row.status, row.cancel_reason) for row in rows}

    assert _run(scratch_url, statuses) == {
        "call_declined": ("cancelled", "Not a fit"),
        "call_rebooked": ("scheduled", None),
        "call_pending": ("scheduled", None),
    }
    # History of the new kinds becomes the nearest old kind; the new event types leave the
    # subscriptions (one that asked only for them stops), and their events go.
    assert _run(scratch_url, _history_and_webhooks) == {
        "history": [("cev_1", "cancelled"), ("cev_2", "updated"), ("cev_3", "booked")],
        "events": [("msg_2",)],
        "deliveries": [("dlv_msg_2",)],
        "subscriptions": {"wh_1": (["call.booked"], True), "wh_2": ([], False)},
    }
    upgrade(scratch_url, "head", settings=settings)  # and up again

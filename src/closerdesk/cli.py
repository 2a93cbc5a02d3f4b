"""``closerdesk``: serve, worker, db, org, apikey, keys, demo (Typer + Rich)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, TypeVar

import typer
from alembic.util import CommandError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from closerdesk.config import Environment, Settings, get_settings
from closerdesk.db import Database
from closerdesk.logs import configure_logging
from closerdesk.migrate import upgrade

if TYPE_CHECKING:
    from fastapi import FastAPI

T = TypeVar("T")


# Plain Click help: Typer's Rich panels print every flag as ``--demo <bool>`` (Click 8.5). No
# pretty tracebacks either: every expected failure is one line (``_fail``).
def _typer(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )


app = _typer("closerdesk: the back office of a high-ticket sales team.")
db_app = _typer("Database schema (Alembic migrations).")
org_app = _typer("Organizations (tenants).")
apikey_app = _typer("API keys.")
keys_app = _typer("Encryption keys of secrets at rest (CLOSERDESK_ENCRYPTION_KEYS).")
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.add_typer(apikey_app, name="apikey")
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class _NotMigrated(Exception):
    """The database has no schema, or an older one: ``closerdesk db upgrade`` first."""


def _with_database(
    settings: Settings,
    work: Callable[[Database], Awaitable[T]],
    *,
    failure_suffix: str = "",
) -> T:
    """Run ``work`` against a migrated ``CLOSERDESK_DATABASE_URL``; every way the database can
    fail is one line and exit 1: a URL that does not parse or names no installed driver, a
    server that does not answer, a SQLite file that does not exist (it is not created), a
    schema that is missing or behind (docs/architecture.md, "Command line")."""
    _require_database_file(settings.database_url)

    async def run() -> T:
        database = Database(settings.database_url)
        try:
            await _require_migrated(database)
            return await work(database)
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except _NotMigrated as exc:
        _fail(str(exc))
    except (OSError, TimeoutError, ImportError, SQLAlchemyError) as exc:
        _fail(_database_failure(exc) + failure_suffix)


def _database_failure(exc: BaseException) -> str:
    first_line = (str(exc).splitlines() or [""])[0]
    return f"the database failed ({type(exc).__name__}: {first_line})"


def _require_database_file(url: str) -> None:
    """A SQLite file that is not there is not made (connecting would leave an empty one)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except SQLAlchemyError as exc:
        _fail(f"CLOSERDESK_DATABASE_URL is not a database URL ({exc})")
    path = parsed.database
    if parsed.get_backend_name() == "sqlite" and path and path != ":memory:":
        if not os.path.exists(path):
            _fail(f"no database at {path}: run `closerdesk db upgrade` to create it")


async def _require_migrated(database: Database) -> None:
    """Raises ``_NotMigrated`` unless the schema is at the newest migration."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect, text

    from closerdesk.migrate import alembic_config

    heads = set(ScriptDirectory.from_config(alembic_config(database.url)).get_heads())
    async with database.engine.connect() as connection:
        has_table = await connection.run_sync(
            lambda sync: inspect(sync).has_table("alembic_version")
        )
        current: set[str] = set()
        if has_table:
            query = text("SELECT version_num FROM alembic_version")
            current = set((await connection.execute(query)).scalars())
    if not current:
        raise _NotMigrated("the database has no schema: run `closerdesk db upgrade` first")
    if current != heads:
        raise _NotMigrated(
            f"the database is at revision {', '.join(sorted(current))}, not "
            f"{', '.join(sorted(heads))}: run `closerdesk db upgrade` first"
        )


def _fail(message: str) -> NoReturn:
    """One red line on stderr and exit status 1 (no traceback)."""
    console.print(f"[red]{escape(message)}[/red]", soft_wrap=True)
    raise typer.Exit(1)


def _require_ready(settings: Settings) -> None:
    """Production without its own secrets, or keys that are not Fernet keys: one line, exit 1
    (before anything is migrated or served)."""
    from closerdesk.kit.secrets import InvalidEncryptionKeys, secret_box

    try:
        settings.check_production_ready()
        secret_box(settings)
    except (InvalidEncryptionKeys, RuntimeError) as exc:
        _fail(str(exc))


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations to CLOSERDESK_DATABASE_URL (existing secrets are encrypted with
    the first key of CLOSERDESK_ENCRYPTION_KEYS on the way to revision 0005)."""
    from closerdesk.kit.secrets import InvalidEncryptionKeys

    settings = get_settings()
    try:
        upgrade(settings.database_url, revision, settings=settings)
    except (InvalidEncryptionKeys, RuntimeError) as exc:
        _fail(str(exc))
    except (OSError, TimeoutError, ImportError, SQLAlchemyError, CommandError) as exc:
        _fail(_database_failure(exc))
    console.print(f"[green]database at {revision}[/green]")


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a fresh random Fernet key, a value for CLOSERDESK_ENCRYPTION_KEYS."""
    from closerdesk.kit.secrets import generate_key

    typer.echo(generate_key())


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret (webhook signing secrets, previous secrets, calendar
    credentials) under the first key of CLOSERDESK_ENCRYPTION_KEYS.

    To change keys: put the new key first and keep the old one after it (both decrypt), run
    this, then drop the old key. Safe to run while serving and to run again. A secret no key
    opens stops it with nothing changed."""
    from closerdesk.calendars.credentials import reseal_credentials
    from closerdesk.kit.secrets import (
        InvalidEncryptionKeys,
        Resealed,
        UndecryptableSecret,
        secret_box,
    )
    from closerdesk.webhooks.service import reseal_secrets

    settings = get_settings()
    try:
        settings.check_encryption_ready()
        box = secret_box(settings)
    except (InvalidEncryptionKeys, RuntimeError) as exc:
        _fail(str(exc))

    async def work(database: Database) -> Resealed:
        async with database.writer() as session:
            done = await reseal_secrets(session, box) + await reseal_credentials(session, box)
            await session.commit()
            return done

    try:
        done = _with_database(settings, work, failure_suffix="; nothing was re-encrypted")
    except UndecryptableSecret as exc:
        _fail(f"{exc}; nothing was re-encrypted")
    typer.echo(
        f"re-encrypted {done.resealed} secrets under the first key ({done.current} already were)"
    )


@org_app.command("create")
def org_create(name: str, as_json: JsonFlag = False) -> None:
    """Create an organization and print its admin API key (shown once).

    NAME is 1–200 characters (surrounding spaces dropped)."""
    from closerdesk.auth.service import create_organization

    name = name.strip()
    if not name or len(name) > 200:
        _fail("the organization name must be 1 to 200 characters")
    settings = get_settings()
    _require_ready(settings)

    async def work(database: Database) -> tuple[str, str]:
        async with database.writer() as session:
            org, key = await create_organization(session, secret_key=settings.secret_key, name=name)
            await session.commit()
            return org.id, key.api_key

    org_id, api_key = _with_database(settings, work)
    if as_json:
        typer.echo(json.dumps({"organization_id": org_id, "api_key": api_key}))
    else:
        console.print(f"organization [bold]{org_id}[/bold]")
        typer.echo(api_key)


@apikey_app.command("create")
def apikey_create(
    org: Annotated[str, typer.Option("--org", help="Organization id (org_…).")],
    scope: Annotated[
        Literal["read", "write", "admin"], typer.Option("--scope", help="read, write or admin.")
    ] = "write",
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Issue an API key for an organization (shown once)."""
    from closerdesk.auth.service import issue_key
    from closerdesk.models import Organization

    settings = get_settings()
    _require_ready(settings)

    async def work(database: Database) -> tuple[str, str] | None:
        async with database.writer() as session:
            if await session.get(Organization, org) is None:
                return None
            key = await issue_key(
                session,
                secret_key=settings.secret_key,
                organization_id=org,
                scope=scope,
                name=name,
            )
            await session.commit()
            return key.id, key.api_key

    issued = _with_database(settings, work)
    if issued is None:
        _fail(f"no organization {org}")
    key_id, api_key = issued
    if as_json:
        typer.echo(
            json.dumps({"id": key_id, "organization_id": org, "scope": scope, "api_key": api_key})
        )
    else:
        console.print(f"key [bold]{key_id}[/bold] ({scope})")
        typer.echo(api_key)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str) -> None:
    """Revoke an API key by its id (key_…); requests with it then answer 401."""
    from closerdesk.auth.service import revoke_key

    settings = get_settings()

    async def work(database: Database) -> bool:
        async with database.writer() as session:
            done = await revoke_key(session, key_id)
            await session.commit()
            return done

    if not _with_database(settings, work):
        _fail(f"no live key {key_id}")
    console.print(f"[green]revoked {key_id}[/green]")


def _print_demo(settings: Settings, as_json: bool) -> None:
    from closerdesk.demo import curl_lines, load_demo

    demo = _with_database(settings, lambda database: load_demo(database, settings))
    lines = curl_lines(demo, settings.public_base_url)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "organization_id": demo.organization_id,
                    "api_key": demo.api_key,
                    "curl": dict(lines),
                }
            )
        )
        return
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"\n[bold green]Demo organization[/bold green] {demo.organization_id}")
    out.print(f"[bold]API key (admin)[/bold] {demo.api_key}\n")
    for title, command in lines:
        out.print(f"[bold]# {title}[/bold]")
        out.print(command, markup=False)
        out.print()


@app.command()
def demo(as_json: JsonFlag = False) -> None:
    """Load the demo organization into the configured database (replacing an earlier one)."""
    settings = get_settings()
    _upgrade_sqlite(settings)
    _print_demo(settings, as_json)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    with_demo: Annotated[
        bool, typer.Option("--demo", help="Load the demo organization and print curl lines.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port; each also runs the background work.",
        ),
    ] = 1,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Proxies (comma-separated addresses, or '*') whose X-Forwarded-For names the "
            "client; default 127.0.0.1 or $FORWARDED_ALLOW_IPS.",
        ),
    ] = None,
) -> None:
    """Run the Partner API (and its in-process workers). The SQLite default is migrated on start.

    Serves on uvloop and httptools (installed with closerdesk). With ``--workers N`` uvicorn
    starts N processes that share the port; each builds its app from the environment (the demo's
    settings are passed to them as ``CLOSERDESK_*`` variables) and runs its own webhook
    dispatcher and calendar worker, which share the work through the database
    (docs/performance.md, "Partner API hot paths")."""
    import uvicorn

    settings = get_settings()
    if with_demo and settings.env is Environment.production:
        console.print(
            "[red]--demo loads sample data and allows private webhook targets; "
            "it is refused with CLOSERDESK_ENV=production[/red]"
        )
        raise typer.Exit(2)
    if with_demo:
        # Through the environment, so that every worker process reads the same settings.
        os.environ["CLOSERDESK_WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"
        os.environ.setdefault("CLOSERDESK_PUBLIC_BASE_URL", f"http://{_display_host(host)}:{port}")
        get_settings.cache_clear()
        settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    _require_ready(settings)
    _upgrade_sqlite(settings)
    if with_demo:
        _print_demo(settings, as_json=False)
    else:
        _with_database(settings, _nothing)  # reachable and migrated, or one line
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
    }
    if forwarded_allow_ips is not None:
        # The client address counts against the per-address rate limits (docs/rate-limits.md).
        options["forwarded_allow_ips"] = forwarded_allow_ips
    if workers == 1:
        uvicorn.run(serving_app(), **options)  # type: ignore[arg-type]
    else:
        uvicorn.run(
            "closerdesk.cli:serving_app",
            factory=True,
            workers=workers,
            **options,  # type: ignore[arg-type]
        )


def serving_app() -> FastAPI:
    """The app ``serve`` runs, built from the environment's settings, with the background work
    in process and the start-up heap frozen (one per server process)."""
    from closerdesk.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    app_instance = create_app(settings, background=True)
    freeze_startup_heap()
    return app_instance


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Deliveries sent at once.")] = 50,
    batch_size: Annotated[int, typer.Option(help="Deliveries claimed per round.")] = 100,
) -> None:
    """Run the background work standalone: webhook deliveries, calendar clean-ups and the
    calendar busy mirror (any number of workers against one PostgreSQL).

    Stops cleanly on SIGINT/SIGTERM (finishing the deliveries in flight); a worker killed
    outright loses nothing: its leased deliveries are taken again when the lease
    (CLOSERDESK_WEBHOOK_LEASE_SECONDS, 60 s) runs out, its calendar syncs after 2 minutes.
    """
    import signal

    from closerdesk.providers import default_providers
    from closerdesk.webhooks.dispatcher import Dispatcher
    from closerdesk.worker import CalendarWorker, run_background

    settings = get_settings()
    _require_ready(settings)
    _with_database(settings, _nothing)  # reachable and migrated, or one line
    configure_logging(settings.log_level, json=settings.log_json)

    async def run() -> None:
        database = Database(settings.database_url)
        dispatcher = Dispatcher(database, settings, batch_size=batch_size, concurrency=concurrency)
        providers = default_providers(settings, database)
        calendars = CalendarWorker(database, settings, providers)
        freeze_startup_heap()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run_background(stop, dispatcher, calendars)
        finally:
            await dispatcher.aclose()
            await providers.aclose()
            await database.dispose()

    asyncio.run(run())


async def _nothing(_database: Database) -> None:
    """The work of a check that the database is reachable and migrated."""


def _upgrade_sqlite(settings: Settings) -> None:
    """The embedded SQLite database is migrated (and created) on start; a failure is one line."""
    if not settings.is_sqlite:
        return
    try:
        upgrade(settings.database_url, settings=settings)
    except (OSError, TimeoutError, ImportError, SQLAlchemyError, CommandError) as exc:
        _fail(_database_failure(exc))


def freeze_startup_heap() -> None:
    """Move everything built at start-up out of the collector's sight (``gc.freeze``).

    The modules, models and schemas never die; without this every full collection walks them
    all again, which showed up as 60–90 ms pauses in slot queries (bench/slots_api.py).
    """
    gc.collect()
    gc.freeze()


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 - display only

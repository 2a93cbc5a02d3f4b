"""Benchmark dataset for bench/api.py (issue 10): a realistic closerdesk on PostgreSQL.

100 organizations, 2,000 closers (20 each), 500 setters, 100 admins, 1,000,003 calls with
their leads, built-in calendar events, conferencing links, history rows and payments, plus
booking links with hosts, products, webhook subscriptions and one admin API key per
organization. The schema is the real one: the Alembic migrations run first. Rows go in
through ``COPY`` (asyncpg ``copy_records_to_table``) with the secondary indexes and
constraints set aside and rebuilt from their own definitions afterwards, so the final schema
is exactly what the migrations made (checked at the end). The calls go in first, and the
exclusion constraint is built while the other tables are copied (the rows waiting for that
hold about 2 GB of this process's memory).

The first organization is the reassign bench's (G3): two closers with 10 calls each and two
with 10,000, and for each pair one upcoming call far in the future that bench/api.py moves
back and forth between the two. Its webhook subscription is disabled, so a reassign writes
its outbox row and a (``failed``, unsent) delivery, and nobody's network is in the figures.

The API keys, the secret key they are hashed under and the Fernet key of the stored secrets
go into a JSON file (``bench/data/api_bench.json``) that bench/api.py reads.

    .venv/bin/python bench/dataset.py [--url postgresql://…/closerdesk_bench] [--calls N]

The database is dropped and created again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from closerdesk.auth.service import KEY_PREFIX, hash_key
from closerdesk.config import Settings
from closerdesk.kit.secrets import SecretBox, generate_key
from closerdesk.migrate import upgrade

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/closerdesk_bench"
DATA_FILE = Path(__file__).parent / "data" / "api_bench.json"
PUBLIC_BASE_URL = "https://desk.example.com"
JITSI = "https://meet.jit.si"

ORGS = 100
CLOSERS_PER_ORG = 20
SETTERS_PER_ORG = 5
CALLS = 1_000_003
SMALL, LARGE = 10, 10_000  # the G3 closers' call counts
PAST_SHARE = 0.9
FOREIGN_EVENTS_PER_CLOSER = 20

FIRST = ("Ava", "Liam", "Noah", "Emma", "Mia", "Lucas", "Zoé", "Mateo", "Ines", "Omar", "Yuki")
LAST = ("Smith", "García", "Müller", "Rossi", "Dubois", "Kowalski", "Tanaka", "Okafor", "Silva")
COMPANIES = ("Acme Inc", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", None)
ZONES = ("America/New_York", "America/Los_Angeles", "Europe/Berlin", "Europe/London")
UTM = (
    ("google", "cpc", "spring_launch", "sales coaching", "ad_a"),
    ("facebook", "paid_social", "webinar_q3", None, "video_2"),
    ("newsletter", "email", "nurture", None, None),
    (None, None, None, None, None),
)
OUTCOMES = (
    ("shown", 35),
    ("closed", 15),
    ("no_show", 15),
    ("lost", 10),
    ("follow_up", 5),
    ("cancelled", 10),
    ("scheduled", 10),  # a past call nobody gave an outcome
)
DURATIONS = (30, 45, 60, 90)


def _id(prefix: str, serial: int) -> str:
    """``<prefix>_<26 Crockford characters>``: a fixed time part and a hexadecimal serial
    (hex digits are Crockford base32 digits), so ids sort by creation like real ones."""
    return f"{prefix}_01JE{serial:022X}"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Member:
    organization_id: str
    id: str
    name: str
    email: str
    role: str
    connection_id: str | None = None
    calls: int = 0
    spacing_hours: int = 30


@dataclass
class Org:
    id: str
    name: str
    api_key: str
    members: list[Member] = field(default_factory=list)
    booking_links: list[str] = field(default_factory=list)
    products: list[tuple[str, int]] = field(default_factory=list)
    subscription_id: str = ""

    def closers(self) -> list[Member]:
        return [m for m in self.members if m.role == "closer"]

    def setters(self) -> list[Member]:
        return [m for m in self.members if m.role == "setter"]


@dataclass
class Rows:
    """Rows per table, in the column order of ``COLUMNS``."""

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.tables.setdefault(table, []).append(row)


COLUMNS: dict[str, tuple[str, ...]] = {
    "organizations": ("id", "name", "is_demo", "created_at"),
    "api_keys": (
        "id", "organization_id", "name", "scope", "key_hash", "key_prefix", "created_at",
        "revoked_at",
    ),
    "team_members": (
        "organization_id", "id", "name", "email", "role", "time_zone", "is_active",
        "last_booked_at", "created_at", "updated_at",
    ),
    "calendar_connections": (
        "id", "organization_id", "member_id", "provider", "provider_grant_id", "calendar_id",
        "status", "credentials", "sync_status", "created_at", "updated_at",
    ),
    "products": (
        "id", "organization_id", "name", "description", "price", "currency", "is_active",
        "created_at", "updated_at",
    ),
    "booking_links": (
        "id", "organization_id", "slug", "title", "description", "duration_minutes",
        "assignment", "minimum_notice_minutes", "slot_interval_minutes",
        "buffer_before_minutes", "buffer_after_minutes", "is_active", "created_at",
        "updated_at",
    ),
    "booking_link_hosts": (
        "booking_link_id", "member_id", "organization_id", "priority", "weight", "position",
        "schedule",
    ),
    "webhook_subscriptions": (
        "id", "organization_id", "target_url", "event_types", "description", "secret",
        "is_active", "disabled_at", "disabled_reason", "created_at", "updated_at",
    ),
    "leads": (
        "id", "organization_id", "email", "full_name", "phone", "company", "time_zone",
        "status", "metadata", "created_at", "updated_at",
    ),
    "calls": (
        "id", "organization_id", "call_kind", "status", "lead_id", "closer_id", "closer_name",
        "closer_email", "setter_id", "booking_link_id", "product_id", "scheduled_at",
        "ends_at", "duration_minutes", "time_zone", "started_at", "ended_at",
        "conferencing_link", "calendar_event_id", "calendar_grant_id", "expected_deal_value",
        "linked_payment_id", "ai_summary", "action_items", "form_data", "notes",
        "recording_url", "transcript_data", "guest_rsvp_status", "guest_rsvp_confirmed_at",
        "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "referral",
        "cancelled_at", "cancel_reason", "reschedule_count", "sequence", "override_conflict",
        "created_at", "updated_at",
    ),
    "calendar_events": (
        "id", "organization_id", "connection_id", "call_id", "title", "description",
        "location", "starts_at", "ends_at", "status", "created_at", "updated_at",
    ),
    "conferencing_links": (
        "id", "organization_id", "call_id", "token", "room_url", "created_at", "revoked_at",
    ),
    "call_events": (
        "id", "organization_id", "call_id", "type", "actor_type", "actor_id", "reason",
        "before", "after", "created_at",
    ),
    "payments": (
        "id", "organization_id", "lead_id", "call_id", "product_id", "amount", "currency",
        "provider", "provider_payment_id", "paid_at", "created_at",
    ),
}  # fmt: skip
BULK = ("leads", "calls", "calendar_events", "conferencing_links", "call_events", "payments")


class Serials:
    """One counter per id prefix."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def id(self, prefix: str) -> str:
        serial = self.next.get(prefix, 1)
        self.next[prefix] = serial + 1
        return _id(prefix, serial)


# --- the people -------------------------------------------------------------------------------
def _person(rng: random.Random, n: int) -> tuple[str, str]:
    first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST)) % len(LAST)]
    return f"{first} {last}", f"{first}.{last}.{n}".lower()


def plan_orgs(secret_key: str, rng: random.Random, ids: Serials) -> list[Org]:
    """Organizations with their members, each closer's call count and spacing."""
    orgs: list[Org] = []
    person = 0
    for o in range(ORGS):
        clear = KEY_PREFIX + secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
        org = Org(ids.id("org"), f"Org {o:03d} {LAST[o % len(LAST)]} Sales", clear)
        roles = ["admin"] + ["closer"] * CLOSERS_PER_ORG + ["setter"] * SETTERS_PER_ORG
        for role in roles:
            person += 1
            name, handle = _person(rng, person)
            org.members.append(
                Member(org.id, f"user_{person:06d}", name, f"{handle}@org{o}.example.com", role)
            )
        orgs.append(org)
    _share_calls(orgs)
    return orgs


def _share_calls(orgs: list[Org]) -> None:
    """1,000,003 calls over the closers; the first organization's first four closers get
    10, 10, 10,000 and 10,000 (the G3 pairs)."""
    special = orgs[0].closers()[:4]
    for member, count in zip(special, (SMALL, SMALL, LARGE, LARGE), strict=True):
        member.calls, member.spacing_hours = count, 2 if count == LARGE else 30
    rest = [m for org in orgs for m in org.closers() if m not in special]
    left = CALLS - sum(m.calls for m in special) - 2  # and the two G3 calls
    for index, member in enumerate(rest):
        member.calls = left // len(rest) + (1 if index < left % len(rest) else 0)


def g3_pairs(orgs: list[Org]) -> dict[str, tuple[str, str]]:
    closers = orgs[0].closers()
    return {
        str(SMALL): (closers[0].id, closers[1].id),
        str(LARGE): (closers[2].id, closers[3].id),
    }


# --- the small tables -------------------------------------------------------------------------
def org_rows(
    org: Org, o: int, secret_key: str, box: SecretBox, now: datetime, ids: Serials
) -> Rows:
    """The organization, its key, members, calendars, products, links and subscription."""
    rows = Rows()
    created = now - timedelta(days=900)
    rows.add("organizations", (org.id, org.name, False, created))
    rows.add(
        "api_keys",
        (ids.id("key"), org.id, "admin", "admin", hash_key(secret_key, org.api_key),
         org.api_key[:12], created, None),
    )  # fmt: skip
    for m in org.members:
        zone = ZONES[hash(m.id) % len(ZONES)]
        rows.add(
            "team_members",
            (org.id, m.id, m.name, m.email, m.role, zone, True, None, created, created),
        )
        if m.role == "closer":
            m.connection_id = ids.id("cal")
            rows.add(
                "calendar_connections",
                (m.connection_id, org.id, m.id, "builtin", m.connection_id,
                 f"builtin:{m.id}", "valid", None, "ok", created, created),
            )  # fmt: skip
    for p, (name, price) in enumerate((("Coaching program", 450_000), ("Mastermind", 1_200_000))):
        product_id = ids.id("prod")
        org.products.append((product_id, price))
        rows.add(
            "products",
            (product_id, org.id, name, f"{name}, 12 weeks", price, "USD", True, created, created),
        )
        del p
    _booking_links(rows, org, created, ids)
    org.subscription_id = ids.id("wh")
    bench_org = o == 0
    rows.add(
        "webhook_subscriptions",
        (org.subscription_id, org.id, f"https://hooks.org{o}.example.com/closerdesk",
         _json(["*"]), "CRM sync", box.encrypt("whsec_" + secrets.token_urlsafe(24)),
         not bench_org, now if bench_org else None,
         "disabled for bench/api.py: deliveries are written but not sent" if bench_org else None,
         created, created),
    )  # fmt: skip
    return rows


def _booking_links(rows: Rows, org: Org, created: datetime, ids: Serials) -> None:
    weekly = [{"day": d, "start": "09:00", "end": "17:00"} for d in range(5)]
    for n, (slug, minutes) in enumerate((("strategy-call", 45), ("discovery", 30), ("demo", 60))):
        link_id = ids.id("bl")
        org.booking_links.append(link_id)
        rows.add(
            "booking_links",
            (link_id, org.id, slug, slug.replace("-", " ").title(),
             f"A {minutes}-minute call with one of our advisers.", minutes, "round_robin",
             120, None, 0, 15, True, created, created),
        )  # fmt: skip
        for position, m in enumerate(org.closers()[n::3]):
            schedule = {"time_zone": ZONES[position % len(ZONES)], "weekly": weekly}
            rows.add(
                "booking_link_hosts",
                (link_id, m.id, org.id, "medium", 100, position, _json(schedule)),
            )


# --- calls and what hangs off them ------------------------------------------------------------
@dataclass
class CallPlan:
    """What one call is: enough to write its row and the rows around it."""

    id: str
    kind: str
    status: str
    start: datetime | None
    minutes: int


def _status(rng: random.Random, past: bool) -> str:
    if not past:
        return "scheduled"
    roll = rng.randrange(100)
    for status, share in OUTCOMES:
        if roll < share:
            return status
        roll -= share
    return "shown"


def closer_calls(m: Member, rng: random.Random, now: datetime, ids: Serials) -> Iterator[CallPlan]:
    """A closer's calls: 90 % past, the rest upcoming, never overlapping (the exclusion
    constraint), 2 % intent calls without a time."""
    past = int(m.calls * PAST_SHARE)
    offset = timedelta(minutes=rng.randrange(0, 12) * 15)
    for j in range(m.calls):
        call_id = ids.id("call")
        if rng.random() < 0.02 and m.calls > SMALL:
            yield CallPlan(call_id, "intent", "scheduled", None, 45)
            continue
        start = now + offset + timedelta(hours=(j - past) * m.spacing_hours)
        yield CallPlan(call_id, "booking", _status(rng, j < past), start, rng.choice(DURATIONS))


ACTION_ITEMS = _json(
    [
        {"title": "Send the proposal", "owner": "closer", "due_at": "in 2 days", "notes": None},
        {"title": "Book the onboarding", "owner": "lead", "due_at": None, "notes": "Tuesdays"},
    ]
)
FORM_DATA = _json(
    [
        {"field_id": "revenue", "label": "Monthly revenue", "value": "$20k-$50k"},
        {"field_id": "goal", "label": "Main goal this quarter", "value": "Hire two closers"},
    ]
)
TRANSCRIPT = _json(
    {
        "duration_seconds": 2650.5,
        "language": "en",
        "segments": [
            {"start_seconds": 0.5, "end_seconds": 4.5, "speaker": "closer", "text": "Hi!"},
            {"start_seconds": 4.5, "end_seconds": 9.25, "speaker": "lead", "text": "Hello."},
        ],
    }
)
SUMMARY = "Lead runs a 6-person agency, wants predictable pipeline; budget confirmed."


@dataclass
class Lead:
    id: str
    name: str
    email: str


def call_rows(org: Org, o: int, rng: random.Random, now: datetime, ids: Serials) -> Rows:
    """Every call of the organization with its lead, event, link, history and payment."""
    rows = Rows()
    setters = org.setters()
    lead: Lead | None = None
    n = 0
    for m in org.closers():
        for plan in closer_calls(m, rng, now, ids):
            if lead is None or n % 2 == 0:  # two calls per lead
                lead = _lead(rows, org, o, n, rng, now, ids)
            n += 1
            setter = setters[n % len(setters)].id if n % 5 < 2 else None
            _call(rows, org, m, plan, lead, setter, rng, now, ids)
    return rows


def _lead(
    rows: Rows, org: Org, o: int, n: int, rng: random.Random, now: datetime, ids: Serials
) -> Lead:
    name, handle = _person(rng, n + 7)
    lead = Lead(ids.id("lead"), name, f"{handle}@lead{o}.example.net")
    created = now - timedelta(days=rng.randrange(1, 900))
    rows.add(
        "leads",
        (lead.id, org.id, lead.email, name, f"+1415555{n % 10000:04d}",
         COMPANIES[n % len(COMPANIES)], ZONES[n % len(ZONES)],
         ("new", "contacted", "qualified", "won", "lost")[n % 5],
         _json({"source": "typeform", "score": n % 100}), created, created),
    )  # fmt: skip
    return lead


def _call(
    rows: Rows,
    org: Org,
    m: Member,
    plan: CallPlan,
    lead: Lead,
    setter: str | None,
    rng: random.Random,
    now: datetime,
    ids: Serials,
) -> None:
    start, status, booking = plan.start, plan.status, plan.kind == "booking"
    created = (start or now) - timedelta(days=rng.randrange(2, 20))
    end = start + timedelta(minutes=plan.minutes) if start else None
    outcome = status in {"shown", "closed", "lost", "follow_up"}
    cancelled = status == "cancelled"
    updated = (end or created) + timedelta(hours=1) if start and start < now else created
    link = event_id = token = None
    if booking:
        token = secrets.token_urlsafe(18)
        link = f"{PUBLIC_BASE_URL}/meet/{token}"
        event_id = ids.id("evt")
        rows.add(
            "conferencing_links",
            (ids.id("conf"), org.id, plan.id, token, f"{JITSI}/closerdesk-{token[:16]}",
             created, updated if cancelled else None),
        )  # fmt: skip
        assert start is not None
        assert end is not None
        rows.add(
            "calendar_events",
            (event_id, org.id, m.connection_id, plan.id, f"{lead.name} and {m.name}",
             f"Join: {link}", link, start, end, "cancelled" if cancelled else "confirmed",
             created, updated),
        )  # fmt: skip
    product_id, price = org.products[hash(plan.id) % 2]
    payment_id = None
    if status == "closed":
        payment_id = ids.id("pay")
        rows.add(
            "payments",
            (payment_id, org.id, lead.id, plan.id, product_id, price, "USD", "stripe",
             f"pi_{token}", updated, updated),
        )  # fmt: skip
    utm = UTM[hash(plan.id) % len(UTM)]
    rows.add(
        "calls",
        (plan.id, org.id, plan.kind, status, lead.id, m.id, m.name, m.email, setter,
         org.booking_links[hash(plan.id) % 3] if booking and setter is None else None,
         product_id, start, end, plan.minutes if booking else None,
         ZONES[hash(lead.id) % len(ZONES)],
         start if outcome else None, end if outcome else None, link, event_id,
         m.connection_id if booking else None, price,
         payment_id, SUMMARY if outcome else None, ACTION_ITEMS if outcome else "[]",
         FORM_DATA, "Asked about payment plans." if setter else None,
         f"https://recordings.example.com/{plan.id}.mp4" if outcome else None,
         TRANSCRIPT if outcome else None,
         "yes" if booking and not cancelled else None,
         created + timedelta(hours=3) if booking and not cancelled else None,
         *utm, "partner-42" if utm[0] is None else None,
         updated if cancelled else None, "Lead asked to cancel" if cancelled else None,
         0, 0, False, created, updated),
    )  # fmt: skip
    _history(rows, org, plan, m, status, created, updated, ids)


def _history(
    rows: Rows,
    org: Org,
    plan: CallPlan,
    m: Member,
    status: str,
    created: datetime,
    updated: datetime,
    ids: Serials,
) -> None:
    actor = ("api_key", "key_bench")
    after = _json({"closer_id": m.id, "status": "scheduled"})
    rows.add("call_events", (ids.id("cev"), org.id, plan.id, "booked", *actor, None, "{}", after,
                             created))  # fmt: skip
    if status != "scheduled":
        kind = "cancelled" if status == "cancelled" else "outcome_set"
        rows.add(
            "call_events",
            (ids.id("cev"), org.id, plan.id, kind, *actor, None,
             _json({"status": "scheduled"}), _json({"status": status}), updated),
        )  # fmt: skip


def foreign_events(org: Org, now: datetime, ids: Serials) -> Rows:
    """Each closer's own appointments on the built-in calendar (lunch, team meetings)."""
    rows = Rows()
    for m in org.closers():
        for k in range(FOREIGN_EVENTS_PER_CLOSER):
            start = now + timedelta(days=k * 3 - 30, hours=12, minutes=m.calls % 4 * 15)
            rows.add(
                "calendar_events",
                (ids.id("evt"), org.id, m.connection_id, None, "Team meeting", "", "Room 2",
                 start, start + timedelta(minutes=30), "confirmed", now, now),
            )  # fmt: skip
    return rows


def g3_calls(orgs: list[Org], now: datetime, ids: Serials) -> tuple[Rows, dict[str, str]]:
    """For each G3 pair, one upcoming call 200+ days out (no other call is that far) held by
    the pair's first closer; bench/api.py moves it back and forth."""
    rows, calls = Rows(), {}
    org = orgs[0]
    by_id = {m.id: m for m in org.members}
    rng = random.Random(99)
    for day, (size, (first, _second)) in enumerate(g3_pairs(orgs).items()):
        m = by_id[first]
        lead = _lead(rows, org, 0, 900_000 + day, rng, now, ids)
        start = (now + timedelta(days=200 + day)).replace(hour=15, minute=0)
        plan = CallPlan(ids.id("call"), "booking", "scheduled", start, 45)
        _call(rows, org, m, plan, lead, None, rng, now, ids)
        calls[size] = plan.id
    return rows, calls


# --- loading ----------------------------------------------------------------------------------
async def set_aside(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """Drop the secondary indexes, unique and exclusion constraints of the bulk tables; returns
    (table, statement) pairs that rebuild them exactly (their own definitions). Foreign keys
    stay: the load runs with ``session_replication_role = replica`` (no FK triggers), the rows
    being consistent by construction."""
    tables = list(BULK)
    constraints = await conn.fetch(
        """SELECT c.conrelid::regclass::text AS tbl, c.conname,
                  pg_get_constraintdef(c.oid) AS def
           FROM pg_constraint c
           WHERE c.conrelid = ANY($1::text[]::regclass[]) AND c.contype IN ('u', 'x')""",
        tables,
    )
    indexes = await conn.fetch(
        """SELECT i.indrelid::regclass::text AS tbl, i.indexrelid::regclass::text AS name,
                  pg_get_indexdef(i.indexrelid) AS def
           FROM pg_index i
           WHERE i.indrelid = ANY($1::text[]::regclass[]) AND NOT i.indisprimary
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        tables,
    )
    rebuild = [(r["tbl"], r["def"]) for r in indexes]
    rebuild += [(r["tbl"], f'ALTER TABLE {r["tbl"]} ADD CONSTRAINT "{r["conname"]}" {r["def"]}')
                for r in constraints]  # fmt: skip
    for r in constraints:
        await conn.execute(f'ALTER TABLE {r["tbl"]} DROP CONSTRAINT "{r["conname"]}"')
    for r in indexes:
        await conn.execute(f"DROP INDEX {r['name']}")
    return rebuild


async def run_statements(url: str, statements: Sequence[str]) -> None:
    """The statements in order, on a connection of their own."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def copy(conn: asyncpg.Connection, rows: Rows) -> None:
    for table, records in rows.tables.items():
        await conn.copy_records_to_table(table, records=records, columns=COLUMNS[table])


async def copy_calls(conn: asyncpg.Connection, rows: Rows) -> Rows:
    """Copy the ``calls`` rows now; returns the other tables' rows, to be copied later."""
    await copy(conn, Rows({"calls": rows.tables.pop("calls", [])}))
    return rows


async def schema_signature(conn: asyncpg.Connection) -> list[str]:
    """Every index and constraint definition of the public schema, sorted."""
    found = await conn.fetch(
        """SELECT pg_get_indexdef(indexrelid) AS d FROM pg_index
           JOIN pg_class ON pg_class.oid = indrelid
           JOIN pg_namespace n ON n.oid = relnamespace WHERE n.nspname = 'public'
           UNION ALL
           SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace"""
    )
    return sorted(r["d"] for r in found)


async def load(url: str) -> dict[str, Any]:
    """Fill the migrated database at ``url``; returns what bench/api.py needs."""
    rng = random.Random(10)
    ids = Serials()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    secret_key = secrets.token_hex(32)
    encryption_key = generate_key()
    box = SecretBox([encryption_key])
    orgs = plan_orgs(secret_key, rng, ids)
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        before = await schema_signature(conn)
        statements = await set_aside(conn)
        exclusion = [s for table, s in statements if table == "calls" and " EXCLUDE " in s]
        calls_rest = [s for table, s in statements if table == "calls" and " EXCLUDE " not in s]
        others = [s for table, s in statements if table != "calls"]
        await conn.execute("SET session_replication_role = replica")  # no FK triggers in COPY
        for o, org in enumerate(orgs):
            await copy(conn, org_rows(org, o, secret_key, box, now, ids))
        g3_rows, g3 = g3_calls(orgs, now, ids)
        # The calls go in first and the rows hanging off them wait in memory, so that the
        # exclusion constraint (the longest step by far) is built while they are copied. Each
        # table still receives its rows in the same order as when everything went in at once.
        held: list[Rows] = []
        for o, org in enumerate(orgs):
            held.append(await copy_calls(conn, call_rows(org, o, rng, now, ids)))
            held.append(foreign_events(org, now, ids))
        held.append(await copy_calls(conn, g3_rows))
        print(f"  calls copied at {time.perf_counter() - started:.1f} s", flush=True)
        gist = asyncio.create_task(run_statements(url, exclusion))
        try:
            held.reverse()
            while held:
                await copy(conn, held.pop())
            await conn.execute("SET session_replication_role = origin")
            print(f"  copied in {time.perf_counter() - started:.1f} s", flush=True)
            await run_statements(url, others)
            print(f"  other tables' indexes rebuilt at {time.perf_counter() - started:.1f} s",
                  flush=True)  # fmt: skip
            await gist
        finally:
            gist.cancel()  # a failed copy leaves no constraint building behind (done: no-op)
        print(f"  exclusion constraint built at {time.perf_counter() - started:.1f} s", flush=True)
        half = len(calls_rest) // 2  # calls' other indexes: two connections, one per core
        await asyncio.gather(
            run_statements(url, calls_rest[:half]), run_statements(url, calls_rest[half:])
        )
        print(f"  indexes rebuilt at {time.perf_counter() - started:.1f} s", flush=True)
        await conn.execute("ANALYZE")
        assert await schema_signature(conn) == before, "the rebuilt schema differs"
        total = await conn.fetchval("SELECT count(*) FROM calls")
    finally:
        await conn.close()
    return {
        "secret_key": secret_key,
        "encryption_key": encryption_key,
        "public_base_url": PUBLIC_BASE_URL,
        "calls": total,
        "organizations": [
            {"id": org.id, "api_key": org.api_key, "closers": [m.id for m in org.closers()]}
            for org in orgs
        ],
        "g3": {size: {"call_id": g3[size], "closers": list(pair)}
               for size, pair in g3_pairs(orgs).items()},
    }  # fmt: skip


async def recreate(url: str) -> None:
    server, _, name = url.rpartition("/")
    conn = await asyncpg.connect(f"{server}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def main() -> None:
    global CALLS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="plain postgresql:// URL")
    parser.add_argument("--calls", type=int, default=CALLS)
    args = parser.parse_args()
    CALLS = args.calls
    started = time.perf_counter()
    asyncio.run(recreate(args.url))
    upgrade(sqlalchemy_url(args.url), settings=Settings(database_url=sqlalchemy_url(args.url)))
    migrated = time.perf_counter()
    info = asyncio.run(load(args.url))
    info["database_url"] = args.url
    DATA_FILE.parent.mkdir(exist_ok=True)
    DATA_FILE.write_text(json.dumps(info, indent=1))
    print(
        f"dataset: {info['calls']:,} calls, {ORGS} organizations, {ORGS * CLOSERS_PER_ORG:,} "
        f"closers; migrations {migrated - started:.1f} s, "
        f"load {time.perf_counter() - migrated:.1f} s, total {time.perf_counter() - started:.1f} s"
        f" ({time.process_time():.1f} s of this process's CPU); keys in {DATA_FILE}"
    )


if __name__ == "__main__":
    main()

"""``Idempotency-Key`` on POST and PATCH (docs/idempotency.md): replay, reuse, a key in use,
5xx and crashes not stored, expiry, isolation per organization, and a booking replayed without
a second call or calendar event. Runs on SQLite and on PostgreSQL.

The concurrency test holds the first request inside its change with a conferencing provider
whose ``issue_link`` waits on a gate (a stand-in for a slow meeting service), so the second
request really arrives while the first is running.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.calendars.provider import CalendarAccount, CalendarError, EventDraft
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.ids import new_id
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import CalendarEvent, Call, IdempotencyKey, Lead
from closerdesk.providers import Providers, default_providers
from tests.factories import Org, create_lead, create_member

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


@dataclasses.dataclass
class Switches:
    """The test's hold on the meeting service and the calendar."""

    gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    entered: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    crash_link: bool = False
    fail_calendar: bool = False

    def __post_init__(self) -> None:
        self.gate.set()


class GatedConferencing:
    def __init__(self, inner: Any, switches: Switches) -> None:
        self.inner, self.switches = inner, switches

    async def issue_link(self, organization_id: str, call_id: str) -> str:
        self.switches.entered.set()
        await self.switches.gate.wait()
        if self.switches.crash_link:
            raise RuntimeError("meeting service crashed")
        link: str = await self.inner.issue_link(organization_id, call_id)
        return link

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SwitchedCalendar:
    def __init__(self, inner: Any, switches: Switches) -> None:
        self.inner, self.switches = inner, switches

    async def create_event(self, account: CalendarAccount, draft: EventDraft) -> Any:
        if self.switches.fail_calendar:
            raise CalendarError("calendar down")
        return await self.inner.create_event(account, draft)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def switches() -> Switches:
    return Switches()


@pytest.fixture
def providers(settings: Settings, switches: Switches) -> Providers:
    real = default_providers(settings)
    return dataclasses.replace(
        real,
        calendars=lambda session, name: SwitchedCalendar(real.calendars(session, name), switches),
        conferencing=lambda session: GatedConferencing(real.conferencing(session), switches),
    )


def _lead(email: str = "ada@example.com", **extra: Any) -> dict[str, Any]:
    return {"email": email, "full_name": "Ada Lovelace", **extra}


async def _count(database: Database, model: Any, *where: Any) -> int:
    async with database.reader() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _booking(session: AsyncSession, org: Org) -> dict[str, Any]:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    start = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    return {
        "lead_id": lead.id,
        "closer_id": closer.id,
        "scheduled_at": isoformat_z(start),
        "duration_minutes": 30,
    }


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text
    assert REPLAYED not in response.headers


# --- replay and reuse ----------------------------------------------------------------------------
async def test_same_request_again_replays_status_and_body(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    headers = {**org.headers, KEY: "lead-ada-1"}
    first = await client.post("/v1/leads", headers=headers, json=_lead())
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    again = await client.post("/v1/leads", headers=headers, json=_lead())
    assert again.status_code == 201
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert again.headers["X-Request-Id"].startswith("req_")
    assert await _count(database, Lead, Lead.organization_id == org.id) == 1


async def test_without_a_key_nothing_is_kept(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    r = await client.post("/v1/leads", headers=org.headers, json=_lead())
    assert r.status_code == 201
    assert await _count(database, IdempotencyKey) == 0


async def test_same_key_with_another_body_or_path_is_422(
    client: httpx.AsyncClient, org: Org
) -> None:
    headers = {**org.headers, KEY: "k-reused"}
    assert (await client.post("/v1/leads", headers=headers, json=_lead())).status_code == 201
    other_body = await client.post("/v1/leads", headers=headers, json=_lead("bob@example.com"))
    _error(other_body, 422, "IDEMPOTENCY_KEY_REUSED")
    other_path = await client.post("/v1/products", headers=headers, json={"name": "X"})
    _error(other_path, 422, "IDEMPOTENCY_KEY_REUSED")


async def test_patch_is_replayed(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    lead = await create_lead(session, org)
    headers = {**org.headers, KEY: "patch-1"}
    first = await client.patch(f"/v1/leads/{lead.id}", headers=headers, json={"company": "Acme"})
    assert first.status_code == 200, first.text
    # A later change by another request is not undone by the replay.
    other = await client.patch(f"/v1/leads/{lead.id}", headers=org.headers, json={"company": "B"})
    assert other.status_code == 200
    again = await client.patch(f"/v1/leads/{lead.id}", headers=headers, json={"company": "Acme"})
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    now = await client.get(f"/v1/leads/{lead.id}", headers=org.headers)
    assert now.json()["data"]["company"] == "B"


async def test_an_error_answer_is_kept_and_replayed(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    headers = {**org.headers, KEY: "bad-email"}
    first = await client.post("/v1/leads", headers=headers, json=_lead("not-an-email"))
    _error(first, 400, "VALIDATION_ERROR")
    again = await client.post("/v1/leads", headers=headers, json=_lead("not-an-email"))
    assert again.status_code == 400
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert await _count(database, IdempotencyKey, IdempotencyKey.response_status == 400) == 1


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, " leading", "tab\tinside", "caf\xe9"],
    ids=["empty", "256-chars", "leading-space", "control", "non-ascii"],
)
async def test_a_malformed_key_is_400(
    client: httpx.AsyncClient, org: Org, database: Database, key: str
) -> None:
    r = await client.post(
        "/v1/leads", headers=[*org.headers.items(), (KEY, key.encode("latin-1"))], json=_lead()
    )
    _error(r, 400, "VALIDATION_ERROR")
    assert r.json()["details"][0]["field"] == KEY
    assert await _count(database, Lead) == 0


async def test_longest_key_and_any_printable_character_work(
    client: httpx.AsyncClient, org: Org
) -> None:
    key = ("a b!~" * 60)[:254] + "z"
    assert len(key) == 255
    headers = {**org.headers, KEY: key}
    assert (await client.post("/v1/leads", headers=headers, json=_lead())).status_code == 201
    again = await client.post("/v1/leads", headers=headers, json=_lead())
    assert again.headers[REPLAYED] == "true"


async def test_a_key_without_a_valid_api_key_is_401_and_not_kept(
    client: httpx.AsyncClient, database: Database
) -> None:
    headers = {"Authorization": "Bearer cdk_unknown", KEY: "k1"}
    r = await client.post("/v1/leads", headers=headers, json=_lead())
    _error(r, 401, "UNAUTHORIZED")
    assert await _count(database, IdempotencyKey) == 0


# --- concurrency ---------------------------------------------------------------------------------
async def test_two_requests_at_once_one_runs_the_other_409(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    database: Database,
    switches: Switches,
) -> None:
    body = await _booking(session, org)
    headers = {**org.headers, KEY: "book-once"}
    switches.gate.clear()
    first = asyncio.create_task(client.post("/v1/calls", headers=headers, json=body))
    await asyncio.wait_for(switches.entered.wait(), 30)  # the first is inside its change
    second = await asyncio.wait_for(client.post("/v1/calls", headers=headers, json=body), 30)
    _error(second, 409, "IDEMPOTENCY_KEY_IN_USE")
    switches.gate.set()
    done = await asyncio.wait_for(first, 30)
    assert done.status_code == 201, done.text
    third = await client.post("/v1/calls", headers=headers, json=body)
    assert third.headers[REPLAYED] == "true"
    assert third.content == done.content
    assert await _count(database, Call, Call.organization_id == org.id) == 1


async def test_two_requests_race_for_a_new_key(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    """Both claim at the same moment: exactly one lead is created; the other request either
    waited for the first's answer (a replay) or found it running (409)."""
    headers = {**org.headers, KEY: "race"}
    answers = await asyncio.gather(
        *(client.post("/v1/leads", headers=headers, json=_lead()) for _ in range(6))
    )
    fresh = [r for r in answers if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(fresh) == 1, [r.text for r in answers]
    for r in answers:
        if r is not fresh[0]:
            assert r.status_code in {201, 409}, r.text
            if r.status_code == 201:
                assert r.content == fresh[0].content
    assert await _count(database, Lead, Lead.organization_id == org.id) == 1


# --- 5xx and crashes -----------------------------------------------------------------------------
async def test_a_crash_is_not_kept_and_the_retry_runs(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    database: Database,
    switches: Switches,
) -> None:
    body = await _booking(session, org)
    headers = {**org.headers, KEY: "crash"}
    switches.crash_link = True
    _error(await client.post("/v1/calls", headers=headers, json=body), 500, "INTERNAL_ERROR")
    assert await _count(database, IdempotencyKey) == 0
    switches.crash_link = False
    retry = await client.post("/v1/calls", headers=headers, json=body)
    assert retry.status_code == 201, retry.text
    assert REPLAYED not in retry.headers
    assert await _count(database, Call, Call.organization_id == org.id) == 1


async def test_a_502_is_not_kept_and_the_retry_runs(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    database: Database,
    switches: Switches,
) -> None:
    body = await _booking(session, org)
    headers = {**org.headers, KEY: "calendar-down"}
    switches.fail_calendar = True
    r = await client.post("/v1/calls", headers=headers, json=body)
    _error(r, 502, "CALENDAR_PROVIDER_ERROR")
    assert await _count(database, IdempotencyKey) == 0
    switches.fail_calendar = False
    retry = await client.post("/v1/calls", headers=headers, json=body)
    assert retry.status_code == 201, retry.text
    assert REPLAYED not in retry.headers


async def _claim_row(database: Database, org: Org, key: str, **values: Any) -> None:
    from closerdesk.idempotency.store import fingerprint

    now = utcnow()
    async with database.writer() as s:
        s.add(
            IdempotencyKey(
                **{
                    "id": new_id("idem"),
                    "organization_id": org.id,
                    "key": key,
                    "fingerprint": fingerprint("POST", "/v1/leads", b'{"email":"ada@example.com"}'),
                    "applied": False,
                    "locked_until": now + timedelta(minutes=5),
                    "created_at": now,
                    "expires_at": now + timedelta(hours=24),
                    **values,
                }
            )
        )
        await s.commit()


async def _post_raw(client: httpx.AsyncClient, org: Org, key: str) -> httpx.Response:
    return await client.post(
        "/v1/leads",
        headers={**org.headers, KEY: key, "Content-Type": "application/json"},
        content=b'{"email":"ada@example.com"}',
    )


async def test_a_dead_claim_is_taken_over_after_its_lease(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    await _claim_row(database, org, "running")
    _error(await _post_raw(client, org, "running"), 409, "IDEMPOTENCY_KEY_IN_USE")
    await _claim_row(database, org, "dead", locked_until=utcnow() - timedelta(seconds=1))
    assert (await _post_raw(client, org, "dead")).status_code == 201


async def test_a_claim_whose_change_committed_is_never_run_again(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    await _claim_row(
        database, org, "applied", applied=True, locked_until=utcnow() - timedelta(seconds=1)
    )
    _error(await _post_raw(client, org, "applied"), 409, "IDEMPOTENCY_KEY_IN_USE")
    assert await _count(database, Lead) == 0


async def test_a_change_that_commits_itself_marks_the_key_applied_in_its_commit(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    """A booking commits its calendar unit of work itself; the key is ``applied`` and holds
    the answer once it has answered."""
    body = await _booking(session, org)
    r = await client.post("/v1/calls", headers={**org.headers, KEY: "uow"}, json=body)
    assert r.status_code == 201
    async with database.reader() as s:
        row = await s.scalar(select(IdempotencyKey).where(IdempotencyKey.key == "uow"))
    assert row is not None
    assert row.applied is True
    assert row.response_status == 201
    assert row.response_body is not None
    assert row.response_body.encode() == r.content


# --- expiry and isolation ------------------------------------------------------------------------
async def test_an_expired_key_is_a_new_key(
    client: httpx.AsyncClient, org: Org, database: Database
) -> None:
    headers = {**org.headers, KEY: "old"}
    assert (await client.post("/v1/leads", headers=headers, json=_lead())).status_code == 201
    async with database.writer() as s:
        await s.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))
        await s.commit()
    fresh = await client.post("/v1/leads", headers=headers, json=_lead("bob@example.com"))
    assert fresh.status_code == 201, fresh.text
    assert REPLAYED not in fresh.headers
    assert await _count(database, Lead, Lead.organization_id == org.id) == 2


async def test_keys_are_per_organization(
    client: httpx.AsyncClient, org: Org, other_org: Org, database: Database
) -> None:
    a = await client.post("/v1/leads", headers={**org.headers, KEY: "shared"}, json=_lead())
    b = await client.post(
        "/v1/leads", headers={**other_org.headers, KEY: "shared"}, json=_lead("bob@example.com")
    )
    assert a.status_code == b.status_code == 201
    assert REPLAYED not in b.headers
    assert a.json()["data"]["id"] != b.json()["data"]["id"]
    assert await _count(database, Lead) == 2


# --- booking -------------------------------------------------------------------------------------
async def test_a_replayed_booking_makes_no_second_call_or_calendar_event(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    body = await _booking(session, org)
    headers = {**org.headers, KEY: "book-1"}
    first = await client.post("/v1/calls", headers=headers, json=body)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/calls", headers=headers, json=body)
    assert again.status_code == 201
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert await _count(database, Call, Call.organization_id == org.id) == 1
    assert await _count(database, CalendarEvent) == 1


# --- OpenAPI -------------------------------------------------------------------------------------
async def test_openapi_declares_the_header_the_replay_and_the_errors(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/openapi.json")).json()
    book = doc["paths"]["/v1/calls"]["post"]
    names = {(p["in"], p["name"]) for p in book["parameters"]}
    assert ("header", KEY) in names
    assert REPLAYED in book["responses"]["201"]["headers"]
    assert "IDEMPOTENCY_KEY_IN_USE" in book["responses"]["409"]["description"]
    assert "IDEMPOTENCY_KEY_REUSED" in book["responses"]["422"]["description"]
    listing = doc["paths"]["/v1/calls"]["get"]
    assert ("header", KEY) not in {(p["in"], p["name"]) for p in listing.get("parameters", [])}

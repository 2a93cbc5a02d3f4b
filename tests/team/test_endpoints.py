"""``/v1/team`` (SPEC §4): members, calendar connection, busy blocks, merged busy time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.db import Database
from closerdesk.kit.ids import new_id, ulid
from closerdesk.kit.time import isoformat_z, utcnow
from closerdesk.models import CalendarConnection, CalendarEvent
from tests.factories import Org, create_call, create_lead, create_member

MEMBER_ID = re.compile(r"^user_[A-Za-z0-9]+$")


def _assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == code
    assert body["requestId"] == r.headers["X-Request-Id"]
    return body


def _z(value: datetime) -> str:
    return isoformat_z(value)


async def _create(client: httpx.AsyncClient, org: Org, **body: Any) -> dict[str, Any]:
    suffix = ulid()[-8:].lower()
    body.setdefault("name", f"Member {suffix}")
    body.setdefault("email", f"m-{suffix}@example.com")
    body.setdefault("role", "closer")
    r = await client.post("/v1/team", headers=org.auth("admin"), json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def _pages(
    client: httpx.AsyncClient, org: Org, params: dict[str, Any]
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/team", headers=org.auth("read"), params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["data"])
        cursor = body["pagination"]["next_cursor"]
        assert body["pagination"]["has_more"] is (cursor is not None)
        if cursor is None:
            return pages
        assert len(pages) < 20


async def _connections(database: Database, org_id: str, member_id: str) -> int:
    async with database.reader() as s:
        count = await s.scalar(
            select(func.count())
            .select_from(CalendarConnection)
            .where(
                CalendarConnection.organization_id == org_id,
                CalendarConnection.member_id == member_id,
            )
        )
        return int(count or 0)


# --- members -------------------------------------------------------------------------------------
async def test_create_member_generates_an_id(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post(
        "/v1/team",
        headers=org.auth("admin"),
        json={"name": "Cleo Closer", "email": "Cleo@Example.com", "role": "closer"},
    )
    assert r.status_code == 201, r.text
    member = r.json()["data"]
    assert MEMBER_ID.match(member["id"])
    assert member["name"] == "Cleo Closer"
    assert member["email"] == "cleo@example.com"
    assert member["role"] == "closer"
    assert member["time_zone"] == "UTC"
    assert member["is_active"] is True
    assert member["calendar"] is None
    got = await client.get(f"/v1/team/{member['id']}", headers=org.auth("read"))
    assert got.status_code == 200
    assert got.json()["data"] == member


async def test_create_member_with_partner_id(client: httpx.AsyncClient, org: Org) -> None:
    member = await _create(
        client, org, id="user_2abc123xyz", role="setter", time_zone="America/New_York"
    )
    assert member["id"] == "user_2abc123xyz"
    assert member["role"] == "setter"
    assert member["time_zone"] == "America/New_York"


async def test_member_id_taken_is_409(client: httpx.AsyncClient, org: Org) -> None:
    await _create(client, org, id="user_dup1")
    r = await client.post(
        "/v1/team",
        headers=org.auth("admin"),
        json={"id": "user_dup1", "name": "B", "email": "b@example.com", "role": "closer"},
    )
    _assert_error(r, 409, "MEMBER_ID_TAKEN")


async def test_member_email_taken_is_409(client: httpx.AsyncClient, org: Org) -> None:
    await _create(client, org, email="taken@example.com")
    r = await client.post(
        "/v1/team",
        headers=org.auth("admin"),
        json={"name": "B", "email": "TAKEN@example.com", "role": "setter"},
    )
    _assert_error(r, 409, "MEMBER_EMAIL_TAKEN")


async def test_same_member_id_and_email_in_another_org_are_free(
    client: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    await _create(client, org, id="user_shared", email="shared@example.com")
    await _create(client, other_org, id="user_shared", email="shared@example.com")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "usr_1", "name": "A", "email": "a@example.com", "role": "closer"}, "id"),
        ({"id": "user_a-b", "name": "A", "email": "a@example.com", "role": "closer"}, "id"),
        ({"name": "", "email": "a@example.com", "role": "closer"}, "name"),
        ({"name": "A", "email": "nope", "role": "closer"}, "email"),
        ({"name": "A", "email": "a@example.com", "role": "ceo"}, "role"),
        ({"name": "A", "email": "a@example.com"}, "role"),
        (
            {"name": "A", "email": "a@example.com", "role": "closer", "time_zone": "X/Y"},
            "time_zone",
        ),
        ({"name": "A", "email": "a@example.com", "role": "closer", "is_admin": True}, "is_admin"),
    ],
)
async def test_create_member_validation(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any], field: str
) -> None:
    r = await client.post("/v1/team", headers=org.auth("admin"), json=body)
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert field in [d["field"] for d in err["details"]]


async def test_get_missing_member_is_404(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.get("/v1/team/user_nobody", headers=org.auth("read"))
    _assert_error(r, 404, "MEMBER_NOT_FOUND")


async def test_list_team_pages_with_limit_2(client: httpx.AsyncClient, org: Org) -> None:
    ids = [(await _create(client, org))["id"] for _ in range(3)]
    ids += [(await _create(client, org, id=f"user_custom{i}"))["id"] for i in range(2)]
    pages = await _pages(client, org, {"limit": 2})
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [m["id"] for page in pages for m in page]
    assert len(listed) == len(set(listed))
    assert listed == sorted(ids)  # ordered by id


async def test_list_team_filters_role_and_active(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org, role="closer")
    setter = await create_member(session, org, role="setter", calendar=False)
    admin = await create_member(session, org, role="admin", calendar=False)
    gone = await create_member(session, org, role="setter", calendar=False, is_active=False)

    async def ids(params: dict[str, Any]) -> set[str]:
        return {m["id"] for page in await _pages(client, org, params) for m in page}

    assert await ids({"role": "closer"}) == {closer.id}
    assert await ids({"role": "setter", "limit": 1}) == {setter.id, gone.id}
    assert await ids({"role": "admin"}) == {admin.id}
    assert await ids({"is_active": "false"}) == {gone.id}
    assert await ids({"role": "setter", "is_active": "true"}) == {setter.id}
    listed = (await client.get("/v1/team", headers=org.headers)).json()["data"]
    by_id = {m["id"]: m for m in listed}
    assert by_id[closer.id]["calendar"]["provider"] == "builtin"
    assert by_id[setter.id]["calendar"] is None
    r = await client.get("/v1/team", headers=org.headers, params={"role": "boss"})
    _assert_error(r, 400, "VALIDATION_ERROR")


async def test_patch_member(client: httpx.AsyncClient, org: Org) -> None:
    member = await _create(client, org, email="before@example.com")
    r = await client.patch(
        f"/v1/team/{member['id']}",
        headers=org.auth("admin"),
        json={"name": "Renamed", "email": "After@Example.com", "time_zone": "Europe/Paris"},
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["name"] == "Renamed"
    assert data["email"] == "after@example.com"
    assert data["time_zone"] == "Europe/Paris"
    assert data["role"] == "closer"
    got = (await client.get(f"/v1/team/{member['id']}", headers=org.headers)).json()["data"]
    assert got == data


async def test_patch_member_email_taken_is_409(client: httpx.AsyncClient, org: Org) -> None:
    await _create(client, org, email="one@example.com")
    two = await _create(client, org, email="two@example.com")
    r = await client.patch(
        f"/v1/team/{two['id']}", headers=org.auth("admin"), json={"email": "ONE@example.com"}
    )
    _assert_error(r, 409, "MEMBER_EMAIL_TAKEN")
    r = await client.patch(
        f"/v1/team/{two['id']}", headers=org.auth("admin"), json={"email": "Two@example.com"}
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"name": None},
        {"email": None},
        {"is_active": None},
        {"role": "owner"},
        {"name": ""},
        {"id": "user_new"},
    ],
)
async def test_patch_member_validation(
    client: httpx.AsyncClient, org: Org, body: dict[str, Any]
) -> None:
    member = await _create(client, org)
    r = await client.patch(f"/v1/team/{member['id']}", headers=org.auth("admin"), json=body)
    _assert_error(r, 400, "VALIDATION_ERROR")


async def test_patch_missing_member_is_404(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.patch("/v1/team/user_ghost", headers=org.auth("admin"), json={"name": "X"})
    _assert_error(r, 404, "MEMBER_NOT_FOUND")


@pytest.mark.parametrize("change", [{"is_active": False}, {"role": "setter"}])
async def test_closer_with_upcoming_calls_cannot_leave_closing(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, change: dict[str, Any]
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    await create_call(session, org, lead=lead, closer=closer)
    r = await client.patch(f"/v1/team/{closer.id}", headers=org.auth("admin"), json=change)
    _assert_error(r, 409, "MEMBER_HAS_UPCOMING_CALLS")
    got = (await client.get(f"/v1/team/{closer.id}", headers=org.headers)).json()["data"]
    assert got["is_active"] is True
    assert got["role"] == "closer"
    # Other changes of the same member remain possible.
    r = await client.patch(
        f"/v1/team/{closer.id}", headers=org.auth("admin"), json={"role": "admin"}
    )
    assert r.status_code == 200


async def test_closer_with_only_past_or_cancelled_calls_can_be_deactivated(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=utcnow() - timedelta(days=1)
    )
    await create_call(session, org, lead=lead, closer=closer, status="cancelled")
    r = await client.patch(
        f"/v1/team/{closer.id}", headers=org.auth("admin"), json={"is_active": False}
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["is_active"] is False


async def test_member_admin_routes_need_admin_scope(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    member = await create_member(session, org, calendar=False)
    body = {"name": "W", "email": "w@example.com", "role": "closer"}
    for scope in ("write", "read"):
        headers = org.auth(scope)
        _assert_error(await client.post("/v1/team", headers=headers, json=body), 403, "FORBIDDEN")
        r = await client.patch(f"/v1/team/{member.id}", headers=headers, json={"name": "X"})
        _assert_error(r, 403, "FORBIDDEN")
        r = await client.put(
            f"/v1/team/{member.id}/calendar", headers=headers, json={"provider": "builtin"}
        )
        _assert_error(r, 403, "FORBIDDEN")
        r = await client.delete(f"/v1/team/{member.id}/calendar", headers=headers)
        _assert_error(r, 403, "FORBIDDEN")
    # Nothing happened.
    listed = (await client.get("/v1/team", headers=org.auth("read"))).json()["data"]
    assert [(m["id"], m["name"], m["calendar"]) for m in listed] == [(member.id, member.name, None)]


# --- calendar ------------------------------------------------------------------------------------
async def test_connect_builtin_calendar_is_idempotent(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    member = await create_member(session, org, calendar=False)
    r = await client.put(
        f"/v1/team/{member.id}/calendar", headers=org.auth("admin"), json={"provider": "builtin"}
    )
    assert r.status_code == 200, r.text
    first = r.json()["data"]
    assert first["provider"] == "builtin"
    assert first["status"] == "valid"
    assert first["id"].startswith("cal_")
    again = await client.put(
        f"/v1/team/{member.id}/calendar", headers=org.auth("admin"), json={"provider": "builtin"}
    )
    assert again.status_code == 200
    assert again.json()["data"] == first
    assert await _connections(database, org.id, member.id) == 1
    got = (await client.get(f"/v1/team/{member.id}", headers=org.headers)).json()["data"]
    assert got["calendar"] == first


async def test_reconnect_makes_an_invalid_connection_valid(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    member = await create_member(session, org, calendar_status="invalid")
    before = (await client.get(f"/v1/team/{member.id}", headers=org.headers)).json()["data"]
    assert before["calendar"]["status"] == "invalid"
    r = await client.put(
        f"/v1/team/{member.id}/calendar", headers=org.auth("admin"), json={"provider": "builtin"}
    )
    assert r.status_code == 200
    assert r.json()["data"]["status"] == "valid"
    assert r.json()["data"]["id"] == before["calendar"]["id"]


@pytest.mark.parametrize(
    "body",
    [{}, {"provider": "outlook"}, {"provider": "builtin", "token": "x"}, {"provider": None}],
)
async def test_connect_calendar_validation(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, body: dict[str, Any]
) -> None:
    member = await create_member(session, org, calendar=False)
    r = await client.put(f"/v1/team/{member.id}/calendar", headers=org.auth("admin"), json=body)
    _assert_error(r, 400, "VALIDATION_ERROR")


async def test_calendar_routes_of_missing_member_are_404(
    client: httpx.AsyncClient, org: Org
) -> None:
    r = await client.put(
        "/v1/team/user_ghost/calendar", headers=org.auth("admin"), json={"provider": "builtin"}
    )
    _assert_error(r, 404, "MEMBER_NOT_FOUND")
    r = await client.delete("/v1/team/user_ghost/calendar", headers=org.auth("admin"))
    _assert_error(r, 404, "MEMBER_NOT_FOUND")


async def test_disconnect_calendar(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    member = await create_member(session, org)
    r = await client.delete(f"/v1/team/{member.id}/calendar", headers=org.auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"member_id": member.id, "disconnected": True}
    assert await _connections(database, org.id, member.id) == 0
    got = (await client.get(f"/v1/team/{member.id}", headers=org.headers)).json()["data"]
    assert got["calendar"] is None
    r = await client.delete(f"/v1/team/{member.id}/calendar", headers=org.auth("admin"))
    _assert_error(r, 404, "CALENDAR_NOT_FOUND")


async def test_disconnect_without_calendar_is_404(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    member = await create_member(session, org, calendar=False)
    r = await client.delete(f"/v1/team/{member.id}/calendar", headers=org.auth("admin"))
    _assert_error(r, 404, "CALENDAR_NOT_FOUND")


async def test_disconnected_closer_cannot_receive_calls(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    assert (
        await client.delete(f"/v1/team/{closer.id}/calendar", headers=org.auth("admin"))
    ).status_code == 200
    r = await client.post(
        "/v1/calls",
        headers=org.auth("write"),
        json={
            "lead_id": lead.id,
            "closer_id": closer.id,
            "scheduled_at": _z((utcnow() + timedelta(days=3)).replace(microsecond=0)),
            "duration_minutes": 30,
        },
    )
    _assert_error(r, 409, "CALENDAR_NOT_CONNECTED")


# --- busy blocks ---------------------------------------------------------------------------------
def _day(offset_days: int = 10) -> datetime:
    return (utcnow() + timedelta(days=offset_days)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )


async def test_busy_blocks_create_list_delete(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    member = await create_member(session, org)
    day = _day()
    url = f"/v1/team/{member.id}/busy-blocks"
    r = await client.post(
        url,
        headers=org.auth("write"),
        json={
            "start": _z(day + timedelta(hours=14)),
            "end": _z(day + timedelta(hours=15)),
            "title": "Dentist",
        },
    )
    assert r.status_code == 201, r.text
    late = r.json()["data"]
    assert late["id"].startswith("busy_")
    assert late["member_id"] == member.id
    assert late["title"] == "Dentist"
    assert late["start"] == _z(day + timedelta(hours=14))
    assert late["end"] == _z(day + timedelta(hours=15))
    # An offset is accepted and normalised to UTC; title defaults to "Busy".
    date = day.date().isoformat()
    r = await client.post(
        url,
        headers=org.auth("write"),
        json={"start": f"{date}T09:00:00+02:00", "end": f"{date}T04:00:00-05:00"},
    )
    assert r.status_code == 201, r.text
    early = r.json()["data"]
    assert early["start"] == _z(day + timedelta(hours=7))
    assert early["end"] == _z(day + timedelta(hours=9))
    assert early["title"] == "Busy"

    listed = await client.get(url, headers=org.auth("read"))
    assert listed.status_code == 200
    assert [b["id"] for b in listed.json()["data"]] == [early["id"], late["id"]]

    r = await client.delete(f"{url}/{early['id']}", headers=org.auth("write"))
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"deleted": True}
    r = await client.delete(f"{url}/{early['id']}", headers=org.auth("write"))
    _assert_error(r, 404, "BUSY_BLOCK_NOT_FOUND")
    listed = await client.get(url, headers=org.auth("read"))
    assert [b["id"] for b in listed.json()["data"]] == [late["id"]]


async def test_busy_block_of_another_member_is_not_found(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    alice = await create_member(session, org)
    bob = await create_member(session, org)
    day = _day()
    r = await client.post(
        f"/v1/team/{alice.id}/busy-blocks",
        headers=org.auth("write"),
        json={"start": _z(day), "end": _z(day + timedelta(hours=1))},
    )
    block = r.json()["data"]
    r = await client.delete(f"/v1/team/{bob.id}/busy-blocks/{block['id']}", headers=org.headers)
    _assert_error(r, 404, "BUSY_BLOCK_NOT_FOUND")
    r = await client.delete(
        f"/v1/team/{alice.id}/busy-blocks/{new_id('busy')}", headers=org.headers
    )
    _assert_error(r, 404, "BUSY_BLOCK_NOT_FOUND")
    r = await client.delete(f"/v1/team/user_ghost/busy-blocks/{block['id']}", headers=org.headers)
    _assert_error(r, 404, "MEMBER_NOT_FOUND")
    listed = await client.get(f"/v1/team/{alice.id}/busy-blocks", headers=org.headers)
    assert [b["id"] for b in listed.json()["data"]] == [block["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T10:00:00Z"}, "body"),
        ({"start": "2030-01-01T11:00:00Z", "end": "2030-01-01T10:00:00Z"}, "body"),
        ({"start": "2030-01-01T10:00:00", "end": "2030-01-01T11:00:00Z"}, "start"),
        ({"start": "2030-01-01T10:00:00Z", "end": "tomorrow"}, "end"),
        ({"start": "2030-01-01T10:00:00Z"}, "end"),
        ({"start": "2030-01-01T10:00:00Z", "end": "2031-01-03T10:00:00Z"}, "body"),
        ({"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T11:00:00Z", "x": 1}, "x"),
        (
            {"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T11:00:00Z", "title": "t" * 201},
            "title",
        ),
    ],
)
async def test_busy_block_validation(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    body: dict[str, Any],
    field: str,
) -> None:
    member = await create_member(session, org)
    r = await client.post(f"/v1/team/{member.id}/busy-blocks", headers=org.headers, json=body)
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert field in [d["field"] for d in err["details"]]


async def test_busy_blocks_need_write_scope_and_a_member(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    member = await create_member(session, org)
    body = {"start": "2030-01-01T10:00:00Z", "end": "2030-01-01T11:00:00Z"}
    r = await client.post(f"/v1/team/{member.id}/busy-blocks", headers=org.auth("read"), json=body)
    _assert_error(r, 403, "FORBIDDEN")
    r = await client.post("/v1/team/user_ghost/busy-blocks", headers=org.headers, json=body)
    _assert_error(r, 404, "MEMBER_NOT_FOUND")
    r = await client.get("/v1/team/user_ghost/busy-blocks", headers=org.headers)
    _assert_error(r, 404, "MEMBER_NOT_FOUND")


# --- merged busy time ----------------------------------------------------------------------------
async def _block(
    client: httpx.AsyncClient, org: Org, member_id: str, start: datetime, end: datetime
) -> None:
    r = await client.post(
        f"/v1/team/{member_id}/busy-blocks",
        headers=org.auth("write"),
        json={"start": _z(start), "end": _z(end)},
    )
    assert r.status_code == 201, r.text


async def _busy(
    client: httpx.AsyncClient, org: Org, member_id: str, start: datetime, end: datetime
) -> httpx.Response:
    return await client.get(
        f"/v1/team/{member_id}/busy",
        headers=org.auth("read"),
        params={"start": _z(start), "end": _z(end)},
    )


async def test_busy_merges_calls_and_blocks_clipped_to_the_range(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org)
    other = await create_member(session, org)
    lead = await create_lead(session, org)
    day = _day()
    h = timedelta(hours=1)
    # A call 10:00-10:45; a block overlapping it; a block touching that one.
    await create_call(session, org, lead=lead, closer=closer, scheduled_at=day + 10 * h)
    await _block(client, org, closer.id, day + 10.5 * h, day + 11 * h)
    await _block(client, org, closer.id, day + 11 * h, day + 11.5 * h)
    # A separate block; a block starting before the range; a call ending after it.
    await _block(client, org, closer.id, day + 13 * h, day + 14 * h)
    await _block(client, org, closer.id, day - 1 * h, day + 1 * h)
    await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=day + 23.5 * h, duration_minutes=60
    )
    # Not busy: a cancelled call, an intent call, another member's call and block.
    await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=day + 15 * h, status="cancelled"
    )
    await create_call(session, org, lead=lead, closer=closer, call_kind="intent")
    await create_call(session, org, lead=lead, closer=other, scheduled_at=day + 16 * h)
    await _block(client, org, other.id, day + 17 * h, day + 18 * h)

    r = await _busy(client, org, closer.id, day, day + 24 * h)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [
        {"start": _z(day), "end": _z(day + 1 * h)},
        {"start": _z(day + 10 * h), "end": _z(day + 11.5 * h)},
        {"start": _z(day + 13 * h), "end": _z(day + 14 * h)},
        {"start": _z(day + 23.5 * h), "end": _z(day + 24 * h)},
    ]

    # A narrower window clips the merged span on both sides.
    r = await _busy(client, org, closer.id, day + 10.25 * h, day + 11.25 * h)
    assert r.json()["data"] == [{"start": _z(day + 10.25 * h), "end": _z(day + 11.25 * h)}]
    # A window touching a span's end only shares no time with it.
    r = await _busy(client, org, closer.id, day + 14 * h, day + 15 * h)
    assert r.json()["data"] == []


async def test_busy_counts_external_calendar_events(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org)
    connection_id = await session.scalar(
        select(CalendarConnection.id).where(CalendarConnection.member_id == closer.id)
    )
    day = _day()
    session.add(
        CalendarEvent(
            id=new_id("evt"),
            organization_id=org.id,
            connection_id=connection_id,
            call_id=None,
            title="Lunch",
            starts_at=day + timedelta(hours=12),
            ends_at=day + timedelta(hours=13),
        )
    )
    await session.commit()
    r = await _busy(client, org, closer.id, day, day + timedelta(days=1))
    assert r.json()["data"] == [
        {"start": _z(day + timedelta(hours=12)), "end": _z(day + timedelta(hours=13))}
    ]


async def test_busy_without_calendar_still_counts_calls_and_blocks(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    member = await create_member(session, org, calendar=False)
    lead = await create_lead(session, org)
    day = _day()
    h = timedelta(hours=1)
    await create_call(session, org, lead=lead, closer=member, scheduled_at=day + 9 * h)
    await _block(client, org, member.id, day + 9.75 * h, day + 10 * h)
    r = await _busy(client, org, member.id, day, day + 24 * h)
    assert r.status_code == 200
    assert r.json()["data"] == [{"start": _z(day + 9 * h), "end": _z(day + 10 * h)}]


async def test_busy_range_limits(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    member = await create_member(session, org)
    day = _day()
    assert (await _busy(client, org, member.id, day, day + timedelta(days=92))).status_code == 200
    r = await _busy(client, org, member.id, day, day + timedelta(days=92, seconds=1))
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert err["details"][0]["field"] == "end"
    _assert_error(await _busy(client, org, member.id, day, day), 400, "VALIDATION_ERROR")
    r = await _busy(client, org, member.id, day, day - timedelta(hours=1))
    _assert_error(r, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2030-01-01T00:00:00", "end": "2030-01-02T00:00:00Z"}, "start"),
        ({"start": "2030-01-01T00:00:00Z"}, "end"),
        ({"start": "yesterday", "end": "2030-01-02T00:00:00Z"}, "start"),
    ],
)
async def test_busy_query_validation(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    params: dict[str, str],
    field: str,
) -> None:
    member = await create_member(session, org)
    r = await client.get(f"/v1/team/{member.id}/busy", headers=org.headers, params=params)
    err = _assert_error(r, 400, "VALIDATION_ERROR")
    assert err["details"][0]["field"] == field


async def test_busy_of_missing_member_is_404(client: httpx.AsyncClient, org: Org) -> None:
    day = _day()
    _assert_error(
        await _busy(client, org, "user_ghost", day, day + timedelta(days=1)),
        404,
        "MEMBER_NOT_FOUND",
    )


async def test_disconnect_with_upcoming_calls_is_409_and_keeps_the_calendar(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, database: Database
) -> None:
    closer = await create_member(session, org)
    call = await create_call(session, org, lead=await create_lead(session, org), closer=closer)
    r = await client.delete(f"/v1/team/{closer.id}/calendar", headers=org.auth("admin"))
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "MEMBER_HAS_UPCOMING_CALLS"
    async with database.reader() as s:
        event = await s.get(CalendarEvent, call.calendar_event_id)
        assert event is not None
        assert event.status == "confirmed"
    r = await client.post(f"/v1/calls/{call.id}/cancel", headers=org.auth("write"), json={})
    assert r.status_code == 200, r.text
    r = await client.delete(f"/v1/team/{closer.id}/calendar", headers=org.auth("admin"))
    assert r.status_code == 200, r.text


async def test_renaming_a_closer_updates_the_copies_on_upcoming_calls_only(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org)
    upcoming = await create_call(session, org, lead=lead, closer=closer)
    past = await create_call(
        session, org, lead=lead, closer=closer, scheduled_at=utcnow() - timedelta(days=2)
    )
    r = await client.patch(
        f"/v1/team/{closer.id}",
        headers=org.auth("admin"),
        json={"name": "Renamed Closer", "email": "renamed@example.com"},
    )
    assert r.status_code == 200, r.text
    got = (await client.get(f"/v1/calls/{upcoming.id}", headers=org.headers)).json()["data"]
    assert (got["closer_name"], got["closer_email"]) == ("Renamed Closer", "renamed@example.com")
    old = (await client.get(f"/v1/calls/{past.id}", headers=org.headers)).json()["data"]
    assert (old["closer_name"], old["closer_email"]) == (closer.name, closer.email)

"""``/v1/booking-links`` CRUD (SPEC §4, §5): create, read, list, update, and every refusal."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.booking_links.helpers import (
    create_link,
    error,
    host,
    link_body,
    ok,
    patch_link,
    schedule,
)
from tests.factories import Org, create_member

SPEC_EXAMPLE: dict[str, Any] = {
    "slug": "strategy-call",
    "title": "Strategy call",
    "duration_minutes": 45,
    "assignment": "round_robin",
    "minimum_notice_minutes": 120,
    "slot_interval_minutes": 30,
    "buffer_before_minutes": 0,
    "buffer_after_minutes": 15,
    "hosts": [
        {
            "member_id": "user_2abc123xyz",
            "priority": "high",
            "weight": 100,
            "schedule": {
                "time_zone": "America/New_York",
                "weekly": [{"weekday": "monday", "start": "09:00", "end": "17:00"}],
                "overrides": [{"date": "2026-12-24", "intervals": []}],
            },
        }
    ],
}

LINK_FIELDS = {
    "id",
    "slug",
    "title",
    "description",
    "duration_minutes",
    "assignment",
    "minimum_notice_minutes",
    "slot_interval_minutes",
    "buffer_before_minutes",
    "buffer_after_minutes",
    "is_active",
    "fairness_period",
    "requires_confirmation",
    "hosts",
    "created_at",
    "updated_at",
}


async def _closers(session: AsyncSession, org: Org, n: int) -> list[str]:
    return [(await create_member(session, org)).id for _ in range(n)]


# --- create and read -----------------------------------------------------------------------------
async def test_spec_example_round_trips_with_the_same_names(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    await create_member(session, org, id="user_2abc123xyz")
    created = ok(
        await client.post("/v1/booking-links", headers=org.headers, json=SPEC_EXAMPLE), 201
    )
    assert set(created) == LINK_FIELDS
    assert created["id"].startswith("bl_")
    assert created["is_active"] is True
    fetched = ok(await client.get(f"/v1/booking-links/{created['id']}", headers=org.headers))
    assert fetched == created
    for name, value in SPEC_EXAMPLE.items():
        assert fetched[name] == value, name


async def test_create_applies_defaults(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [closer] = await _closers(session, org, 1)
    body = {
        "slug": "intro",
        "title": "Intro",
        "duration_minutes": 30,
        "hosts": [{"member_id": closer, "schedule": {"time_zone": "Europe/Berlin"}}],
    }
    link = ok(await client.post("/v1/booking-links", headers=org.headers, json=body), 201)
    assert link["assignment"] == "round_robin"
    assert link["minimum_notice_minutes"] == 0
    assert link["slot_interval_minutes"] is None
    assert link["buffer_before_minutes"] == 0
    assert link["buffer_after_minutes"] == 0
    assert link["requires_confirmation"] is False
    assert link["hosts"] == [
        {
            "member_id": closer,
            "priority": "medium",
            "weight": 100,
            "schedule": {"time_zone": "Europe/Berlin", "weekly": [], "overrides": []},
        }
    ]


async def test_hosts_keep_their_order_and_an_admin_may_host(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    closers = await _closers(session, org, 3)
    admin = (await create_member(session, org, role="admin")).id
    order = [closers[2], admin, closers[0], closers[1]]
    link = await create_link(
        client,
        org,
        [
            host(m, priority=p)
            for m, p in zip(order, ["low", "high", "medium", "high"], strict=True)
        ],
    )
    assert [h["member_id"] for h in link["hosts"]] == order
    assert [h["priority"] for h in link["hosts"]] == ["low", "high", "medium", "high"]
    fetched = ok(await client.get(f"/v1/booking-links/{link['id']}", headers=org.headers))
    assert [h["member_id"] for h in fetched["hosts"]] == order


async def test_fixed_link_with_one_host(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [closer] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(closer)], assignment="fixed")
    assert link["assignment"] == "fixed"


async def test_read_scope_reads_but_does_not_write(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [closer] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(closer)])
    read = org.auth("read")
    ok(await client.get(f"/v1/booking-links/{link['id']}", headers=read))
    ok(await client.get("/v1/booking-links", headers=read))
    r = await client.post("/v1/booking-links", headers=read, json=link_body([host(closer)]))
    assert r.status_code == 403, r.text
    r = await client.patch(f"/v1/booking-links/{link['id']}", headers=read, json={"title": "x"})
    assert r.status_code == 403, r.text
    ok(
        await client.post(
            "/v1/booking-links", headers=org.auth("write"), json=link_body([host(closer)])
        ),
        201,
    )


# --- list ----------------------------------------------------------------------------------------
async def test_list_pages_through_every_link_once(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    [closer] = await _closers(session, org, 1)
    [foreign] = await _closers(session, other_org, 1)
    created = [(await create_link(client, org, [host(closer)]))["id"] for _ in range(5)]
    await create_link(client, other_org, [host(foreign)])

    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        r = await client.get("/v1/booking-links", headers=org.headers, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["success"] is True
        assert len(body["data"]) <= 2
        for link in body["data"]:
            assert set(link) == LINK_FIELDS
            assert [h["member_id"] for h in link["hosts"]] == [closer]
        seen += [link["id"] for link in body["data"]]
        pages += 1
        pagination = body["pagination"]
        assert pagination["has_more"] is (pagination["next_cursor"] is not None)
        if not pagination["has_more"]:
            break
        cursor = pagination["next_cursor"]
    assert pages == 3
    assert seen == sorted(created)  # stable order, each once, nothing of the other org
    assert sorted(seen) == sorted(created)


async def test_list_filters_by_is_active(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [closer] = await _closers(session, org, 1)
    active = await create_link(client, org, [host(closer)])
    inactive = await create_link(client, org, [host(closer)])
    ok(await patch_link(client, org, inactive["id"], {"is_active": False}))

    async def ids(flag: str | None) -> list[str]:
        params = {} if flag is None else {"is_active": flag}
        r = await client.get("/v1/booking-links", headers=org.headers, params=params)
        return [link["id"] for link in ok(r)]

    assert await ids("true") == [active["id"]]
    assert await ids("false") == [inactive["id"]]
    assert sorted(await ids(None)) == sorted([active["id"], inactive["id"]])


# --- update --------------------------------------------------------------------------------------
async def test_patch_replaces_the_hosts(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a, b, c = await _closers(session, org, 3)
    link = await create_link(client, org, [host(a, priority="high"), host(b)])
    new_hosts = [
        host(c, priority="low", weight=7, sched=schedule("Asia/Kolkata", "10:00", "18:00")),
        host(a, priority="medium", weight=250),
    ]
    updated = ok(await patch_link(client, org, link["id"], {"hosts": new_hosts}))
    assert updated["hosts"] == new_hosts
    fetched = ok(await client.get(f"/v1/booking-links/{link['id']}", headers=org.headers))
    assert fetched["hosts"] == new_hosts
    # Everything else stays as it was.
    for name in ("slug", "title", "duration_minutes", "assignment", "is_active", "created_at"):
        assert fetched[name] == link[name], name


async def test_patch_changes_only_the_fields_given(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)], buffer_after_minutes=10)
    changes = {
        "title": "Discovery call",
        "duration_minutes": 60,
        "minimum_notice_minutes": 240,
        "slot_interval_minutes": 15,
        "buffer_before_minutes": 5,
    }
    updated = ok(await patch_link(client, org, link["id"], changes))
    for name, value in changes.items():
        assert updated[name] == value, name
    assert updated["buffer_after_minutes"] == 10
    assert updated["hosts"] == link["hosts"]
    assert updated["slug"] == link["slug"]
    # slot_interval_minutes may go back to null ("the duration").
    updated = ok(await patch_link(client, org, link["id"], {"slot_interval_minutes": None}))
    assert updated["slot_interval_minutes"] is None


async def test_description_is_public_text_set_changed_and_cleared(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    assert (await create_link(client, org, [host(a)]))["description"] is None
    link = await create_link(client, org, [host(a)], description="Bring your numbers.")
    assert link["description"] == "Bring your numbers."
    fetched = ok(await client.get(f"/v1/booking-links/{link['id']}", headers=org.headers))
    assert fetched["description"] == "Bring your numbers."
    updated = ok(await patch_link(client, org, link["id"], {"description": "Agenda: pricing."}))
    assert updated["description"] == "Agenda: pricing."
    assert updated["title"] == link["title"]
    cleared = ok(await patch_link(client, org, link["id"], {"description": None}))
    assert cleared["description"] is None
    body = error(
        await patch_link(client, org, link["id"], {"description": "x" * 2001}),
        400,
        "VALIDATION_ERROR",
    )
    assert body["details"][0]["field"] == "description"
    r = await client.post(
        "/v1/booking-links", headers=org.headers, json=link_body([host(a)], description="x" * 2001)
    )
    error(r, 400, "VALIDATION_ERROR")


async def test_patch_deactivates_and_reactivates(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    assert ok(await patch_link(client, org, link["id"], {"is_active": False}))["is_active"] is False
    fetched = ok(await client.get(f"/v1/booking-links/{link['id']}", headers=org.headers))
    assert fetched["is_active"] is False
    assert ok(await patch_link(client, org, link["id"], {"is_active": True}))["is_active"] is True


async def test_patch_to_fixed_needs_exactly_one_host(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a, b = await _closers(session, org, 2)
    link = await create_link(client, org, [host(a), host(b)])
    body = error(
        await patch_link(client, org, link["id"], {"assignment": "fixed"}), 400, "VALIDATION_ERROR"
    )
    assert body["details"][0]["field"] == "hosts"
    fixed = ok(
        await patch_link(client, org, link["id"], {"assignment": "fixed", "hosts": [host(b)]})
    )
    assert fixed["assignment"] == "fixed"
    assert [h["member_id"] for h in fixed["hosts"]] == [b]
    # A fixed link cannot be given a second host.
    error(
        await patch_link(client, org, link["id"], {"hosts": [host(a), host(b)]}),
        400,
        "VALIDATION_ERROR",
    )


@pytest.mark.parametrize(
    "field", ["slug", "title", "duration_minutes", "assignment", "is_active", "hosts"]
)
async def test_patch_refuses_null_for_required_fields(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, field: str
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a)])
    body = error(await patch_link(client, org, link["id"], {field: None}), 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field
    fetched = ok(await client.get(f"/v1/booking-links/{link['id']}", headers=org.headers))
    assert fetched == link


# --- slug ----------------------------------------------------------------------------------------
async def test_slug_is_unique_per_organization(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    [foreign] = await _closers(session, other_org, 1)
    first = await create_link(client, org, [host(a)], slug="strategy-call")
    r = await client.post(
        "/v1/booking-links", headers=org.headers, json=link_body([host(a)], slug="strategy-call")
    )
    error(r, 409, "BOOKING_LINK_SLUG_TAKEN")
    # Another organization may use the same slug.
    await create_link(client, other_org, [host(foreign)], slug="strategy-call")
    # PATCH onto a taken slug is refused; keeping one's own slug is fine.
    second = await create_link(client, org, [host(a)], slug="follow-up")
    error(
        await patch_link(client, org, second["id"], {"slug": "strategy-call"}),
        409,
        "BOOKING_LINK_SLUG_TAKEN",
    )
    same = ok(await patch_link(client, org, first["id"], {"slug": "strategy-call", "title": "New"}))
    assert same["title"] == "New"
    renamed = ok(await patch_link(client, org, second["id"], {"slug": "second-call"}))
    assert renamed["slug"] == "second-call"
    # The old slug is free again.
    await create_link(client, org, [host(a)], slug="follow-up")


# --- not found -----------------------------------------------------------------------------------
async def test_unknown_and_foreign_links_are_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: AsyncSession
) -> None:
    [foreign] = await _closers(session, other_org, 1)
    theirs = await create_link(client, other_org, [host(foreign)])
    for link_id in ("bl_doesnotexist", theirs["id"]):
        error(
            await client.get(f"/v1/booking-links/{link_id}", headers=org.headers),
            404,
            "BOOKING_LINK_NOT_FOUND",
        )
        error(
            await patch_link(client, org, link_id, {"title": "Mine now"}),
            404,
            "BOOKING_LINK_NOT_FOUND",
        )
    fetched = ok(await client.get(f"/v1/booking-links/{theirs['id']}", headers=other_org.headers))
    assert fetched["title"] == theirs["title"]


# --- hosts that are not active closers of the organization ---------------------------------------
@pytest.mark.parametrize("kind", ["missing", "inactive", "setter", "other_org"])
@pytest.mark.parametrize("method", ["post", "patch"])
async def test_a_host_must_be_an_active_closer_of_the_organization(
    client: httpx.AsyncClient,
    org: Org,
    other_org: Org,
    session: AsyncSession,
    kind: str,
    method: str,
) -> None:
    a, b = await _closers(session, org, 2)
    if kind == "missing":
        bad = "user_nobodyhere"
    elif kind == "inactive":
        bad = (await create_member(session, org, is_active=False)).id
    elif kind == "setter":
        bad = (await create_member(session, org, role="setter")).id
    else:
        bad = (await create_member(session, other_org)).id
    hosts = [host(a), host(bad)]
    if method == "post":
        r = await client.post("/v1/booking-links", headers=org.headers, json=link_body(hosts))
    else:
        link = await create_link(client, org, [host(b)])
        r = await patch_link(client, org, link["id"], {"hosts": hosts, "title": "Changed"})
    body = error(r, 404, "CLOSER_NOT_FOUND")
    assert body["details"][0]["field"] == "hosts.1.member_id"
    listed = ok(await client.get("/v1/booking-links", headers=org.headers))
    if method == "post":
        assert listed == []
    else:  # nothing changed
        assert [h["member_id"] for h in listed[0]["hosts"]] == [b]
        assert listed[0]["title"] == "Strategy call"


# --- body validation -----------------------------------------------------------------------------
def _weekly(start: str, end: str, weekday: str = "monday") -> dict[str, Any]:
    return {"time_zone": "UTC", "weekly": [{"weekday": weekday, "start": start, "end": end}]}


BAD_SCHEDULES: list[tuple[str, dict[str, Any]]] = [
    ("one-digit hour", _weekly("9:00", "17:00")),
    ("hour 24 with minutes", _weekly("09:00", "24:01")),
    ("minute 60", _weekly("09:00", "12:60")),
    ("not a time", _weekly("nine", "17:00")),
    ("start equals end", _weekly("10:00", "10:00")),
    ("start after end", _weekly("17:00", "09:00")),
    ("start at 24:00", _weekly("24:00", "24:00")),
    ("unknown weekday", _weekly("09:00", "17:00", weekday="funday")),
    ("capitalised weekday", _weekly("09:00", "17:00", weekday="Monday")),
    ("unknown zone", {"time_zone": "Mars/Olympus_Mons", "weekly": []}),
    ("empty zone", {"time_zone": "", "weekly": []}),
    (
        "override start after end",
        {
            "time_zone": "UTC",
            "overrides": [
                {"date": "2027-01-04", "intervals": [{"start": "12:00", "end": "11:00"}]}
            ],
        },
    ),
    (
        "override date twice",
        {
            "time_zone": "UTC",
            "overrides": [
                {"date": "2027-01-04", "intervals": []},
                {"date": "2027-01-04", "intervals": [{"start": "09:00", "end": "10:00"}]},
            ],
        },
    ),
    ("override bad date", {"time_zone": "UTC", "overrides": [{"date": "2027-02-30"}]}),
]


@pytest.mark.parametrize(("case", "sched"), BAD_SCHEDULES, ids=[c for c, _ in BAD_SCHEDULES])
async def test_bad_schedules_are_400(
    client: httpx.AsyncClient, org: Org, session: AsyncSession, case: str, sched: dict[str, Any]
) -> None:
    [a] = await _closers(session, org, 1)
    r = await client.post(
        "/v1/booking-links", headers=org.headers, json=link_body([host(a, sched=sched)])
    )
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"].startswith("hosts.0.schedule"), body
    # The same schedule is refused on PATCH too, and the link keeps its hosts.
    link = await create_link(client, org, [host(a)])
    body = error(
        await patch_link(client, org, link["id"], {"hosts": [host(a, sched=sched)]}),
        400,
        "VALIDATION_ERROR",
    )
    assert body["details"][0]["field"].startswith("hosts.0.schedule"), body
    fetched = ok(await client.get(f"/v1/booking-links/{link['id']}", headers=org.headers))
    assert fetched["hosts"] == link["hosts"]


async def test_24_00_is_a_valid_end(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    link = await create_link(client, org, [host(a, sched=schedule("UTC", "22:00", "24:00"))])
    assert link["hosts"][0]["schedule"]["weekly"][0]["end"] == "24:00"


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("slug with capitals", {"slug": "Strategy"}, "slug"),
    ("slug with spaces", {"slug": "strategy call"}, "slug"),
    ("empty title", {"title": ""}, "title"),
    ("duration too short", {"duration_minutes": 0}, "duration_minutes"),
    ("negative notice", {"minimum_notice_minutes": -1}, "minimum_notice_minutes"),
    ("interval too short", {"slot_interval_minutes": 1}, "slot_interval_minutes"),
    ("negative buffer", {"buffer_after_minutes": -5}, "buffer_after_minutes"),
    ("unknown assignment", {"assignment": "random"}, "assignment"),
    ("no hosts", {"hosts": []}, "hosts"),
    ("unknown field", {"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
async def test_bad_bodies_are_400(
    client: httpx.AsyncClient,
    org: Org,
    session: AsyncSession,
    case: str,
    change: dict[str, Any],
    field: str,
) -> None:
    [a] = await _closers(session, org, 1)
    r = await client.post(
        "/v1/booking-links", headers=org.headers, json={**link_body([host(a)]), **change}
    )
    body = error(r, 400, "VALIDATION_ERROR")
    assert body["details"][0]["field"] == field, body


async def test_bad_host_entries_are_400(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    a, b = await _closers(session, org, 2)
    cases: list[tuple[list[dict[str, Any]], dict[str, Any], str]] = [
        ([host(a), host(a)], {}, "hosts"),  # duplicate host
        ([host(a), host(b)], {"assignment": "fixed"}, "body"),  # fixed with two hosts
        ([{**host(a), "priority": "urgent"}], {}, "hosts.0.priority"),
        ([{**host(a), "weight": -1}], {}, "hosts.0.weight"),
        ([{**host(a), "member_id": "2abc"}], {}, "hosts.0.member_id"),
        ([{"member_id": a, "priority": "high"}], {}, "hosts.0.schedule"),
    ]
    for hosts, extra, field in cases:
        r = await client.post(
            "/v1/booking-links", headers=org.headers, json=link_body(hosts, **extra)
        )
        body = error(r, 400, "VALIDATION_ERROR")
        assert body["details"][0]["field"] == field, body
    assert ok(await client.get("/v1/booking-links", headers=org.headers)) == []
    # Duplicate hosts on PATCH too.
    link = await create_link(client, org, [host(a)])
    body = error(
        await patch_link(client, org, link["id"], {"hosts": [host(b), host(b)]}),
        400,
        "VALIDATION_ERROR",
    )
    assert body["details"][0]["field"] == "hosts"


async def test_concurrent_creates_of_one_slug_give_one_link(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    """The slug check and the insert race on PostgreSQL: the loser still gets a 409."""
    [a] = await _closers(session, org, 1)
    body = link_body([host(a)], slug="race")
    responses = await asyncio.wait_for(
        asyncio.gather(
            *(client.post("/v1/booking-links", headers=org.headers, json=body) for _ in range(6))
        ),
        60,
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 5, [
        r.text for r in responses
    ]
    for r in responses:
        if r.status_code == 409:
            error(r, 409, "BOOKING_LINK_SLUG_TAKEN")
    assert len(ok(await client.get("/v1/booking-links", headers=org.headers))) == 1


async def test_concurrent_renames_to_one_slug_give_one_winner(
    client: httpx.AsyncClient, org: Org, session: AsyncSession
) -> None:
    [a] = await _closers(session, org, 1)
    links = [(await create_link(client, org, [host(a)]))["id"] for _ in range(4)]
    responses = await asyncio.wait_for(
        asyncio.gather(
            *(patch_link(client, org, link_id, {"slug": "wanted"}) for link_id in links)
        ),
        60,
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * 3, [
        r.text for r in responses
    ]
    listed = ok(await client.get("/v1/booking-links", headers=org.headers))
    assert sorted(link["slug"] for link in listed).count("wanted") == 1

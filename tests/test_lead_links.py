"""The links a lead opens (``docs/links.md``): the public signed ``/ics/{token}`` that follows
the call, ``/meet/{token}`` as an HTML page for browsers once replaced, and ``HEAD`` on both."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from icalendar import Calendar, Event

from closerdesk.calls.ics_token import call_id_of, ics_token
from closerdesk.config import Settings
from closerdesk.meet.endpoints import wants_html
from tests.booking_links.helpers import day, error, iso, ok
from tests.conftest import PUBLIC_BASE_URL
from tests.factories import Org, create_call, create_lead, create_member

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def _book(client: httpx.AsyncClient, org: Org, session: Any) -> dict[str, Any]:
    closer = await create_member(session, org, name="Casey Closer")
    lead = await create_lead(session, org, full_name="Lee Lead", email="lee.lead@example.com")
    body = {
        "lead_id": lead.id,
        "closer_id": closer.id,
        "scheduled_at": iso(day(4, 15)),
        "duration_minutes": 45,
    }
    call: dict[str, Any] = ok(await client.post("/v1/calls", headers=org.headers, json=body), 201)
    return call


async def _ics_path(client: httpx.AsyncClient, org: Org, call_id: str) -> str:
    links = ok(await client.get(f"/v1/calls/{call_id}/calendar-links", headers=org.headers))
    url: str = links["ics"]
    assert url.startswith(f"{PUBLIC_BASE_URL}/ics/"), url
    return url.removeprefix(PUBLIC_BASE_URL)


def _parse(r: httpx.Response) -> tuple[Calendar, Event]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/calendar"), r.headers
    calendar = Calendar.from_ical(r.content)
    assert isinstance(calendar, Calendar)
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    assert isinstance(events[0], Event)
    return calendar, events[0]


# --- /ics/{token} --------------------------------------------------------------------------------
async def test_the_ics_link_needs_no_api_key_and_follows_the_call(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    call = await _book(client, org, session)
    path = await _ics_path(client, org, call["id"])
    calendar, event = _parse(await client.get(path))  # no Authorization header
    assert calendar["METHOD"] == "PUBLISH"
    assert event["STATUS"] == "CONFIRMED"
    assert event.decoded("DTSTART") == day(4, 15)
    assert str(event["UID"]) == f"{call['id']}@closerdesk"

    new_start = day(6, 10, 30)
    body = {"scheduled_at": iso(new_start), "duration_minutes": 60}
    ok(await client.post(f"/v1/calls/{call['id']}/reschedule", headers=org.headers, json=body))
    _, event = _parse(await client.get(path))
    assert event.decoded("DTSTART") == new_start
    assert event.decoded("DTEND") == new_start + timedelta(hours=1)
    assert int(event["SEQUENCE"]) >= 1
    assert await _ics_path(client, org, call["id"]) == path  # one link for the call's life

    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))
    calendar, event = _parse(await client.get(path))
    assert calendar["METHOD"] == "CANCEL"
    assert event["STATUS"] == "CANCELLED"
    assert str(event["UID"]) == f"{call['id']}@closerdesk"


async def test_forged_or_unknown_ics_tokens_are_404(
    client: httpx.AsyncClient, org: Org, session: Any, settings: Settings
) -> None:
    call = await _book(client, org, session)
    path = await _ics_path(client, org, call["id"])
    token = path.removeprefix("/ics/")
    forged = [
        call["id"],  # the call id alone
        f"{call['id']}.",
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # one character changed
        ics_token("another-secret-key-of-another-closerdesk", call["id"]),
        ics_token(settings.secret_key, "call_01missing"),  # well signed, no such call
        "call_x.%C3%A9",
    ]
    for bad in forged:
        error(await client.get(f"/ics/{bad}"), 404, "LINK_NOT_FOUND")
    assert call_id_of(settings.secret_key, token) == call["id"]


async def test_the_ics_of_an_intent_call_is_404(
    client: httpx.AsyncClient, org: Org, session: Any, settings: Settings
) -> None:
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=None, call_kind="intent")
    await session.commit()
    error(
        await client.get(f"/ics/{ics_token(settings.secret_key, call.id)}"), 404, "LINK_NOT_FOUND"
    )


async def test_head_on_the_ics_link(client: httpx.AsyncClient, org: Org, session: Any) -> None:
    call = await _book(client, org, session)
    path = await _ics_path(client, org, call["id"])
    got = await client.get(path)
    head = await client.head(path)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["X-Request-Id"].startswith("req_")
    missing = await client.head("/ics/call_01missing.xyz")
    assert missing.status_code == 404
    assert missing.content == b""
    assert missing.headers["content-type"] == "application/json"


# --- /meet/{token} -------------------------------------------------------------------------------
async def test_a_replaced_meet_link_shows_a_browser_a_page_and_a_client_the_envelope(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    call = await _book(client, org, session)
    meet = call["conferencing_link"].removeprefix(PUBLIC_BASE_URL)
    assert meet.startswith("/meet/")
    live = await client.get(meet, headers={"Accept": BROWSER})
    assert live.status_code == 302
    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))

    page = await client.get(meet, headers={"Accept": BROWSER})
    assert page.status_code == 410
    assert page.headers["content-type"].startswith("text/html")
    assert "this link has been replaced; check your latest invitation" in page.text.lower()
    assert "{" not in page.text  # no JSON shown to a lead
    error(await client.get(meet), 410, "LINK_REVOKED")
    error(await client.get(meet, headers={"Accept": "application/json"}), 410, "LINK_REVOKED")

    unknown = await client.get("/meet/never-issued", headers={"Accept": BROWSER})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")
    assert "check your latest invitation" in unknown.text
    error(await client.get("/meet/never-issued", headers={"Accept": "*/*"}), 404, "LINK_NOT_FOUND")


async def test_head_on_the_meet_link(client: httpx.AsyncClient, org: Org, session: Any) -> None:
    call = await _book(client, org, session)
    meet = call["conferencing_link"].removeprefix(PUBLIC_BASE_URL)
    head = await client.head(meet)
    assert head.status_code == 302
    assert head.headers["location"] == (await client.get(meet)).headers["location"]
    assert head.content == b""
    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))
    gone = await client.head(meet)
    assert gone.status_code == 410
    assert gone.content == b""
    assert (await client.head("/meet/never-issued")).status_code == 404


def test_accept_negotiation() -> None:
    assert wants_html(BROWSER)
    assert wants_html("text/html")
    assert not wants_html("")
    assert not wants_html("*/*")
    assert not wants_html("application/json")
    assert not wants_html("application/json, text/html;q=0.5")
    assert not wants_html("text/html;q=0, */*")
    assert not wants_html("text/html;q=abc")
    assert wants_html("application/json;q=0.1, text/html")

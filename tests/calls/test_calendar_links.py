"""``GET /v1/calls/{id}/calendar-links`` and ``GET /v1/calls/{id}/ics`` (SPEC §5, after seed
001's add-to-calendar links)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from icalendar import Calendar, Event

from tests.booking_links import helpers
from tests.booking_links.helpers import create_link, day, error, iso, ok
from tests.conftest import PUBLIC_BASE_URL
from tests.factories import Org, create_call, create_lead, create_member


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _query(url: str) -> dict[str, str]:
    parts = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in parts.values()), parts
    return {k: v[0] for k, v in parts.items()}


async def _book(
    client: httpx.AsyncClient, org: Org, session: Any, start: datetime, minutes: int = 45
) -> tuple[dict[str, Any], Any, Any]:
    closer = await create_member(session, org, name="Casey Closer")
    lead = await create_lead(session, org, full_name="Lee Lead", email="lee.lead@example.com")
    body = {
        "lead_id": lead.id,
        "closer_id": closer.id,
        "scheduled_at": iso(start),
        "duration_minutes": minutes,
    }
    call = ok(await client.post("/v1/calls", headers=org.headers, json=body), 201)
    return call, closer, lead


async def _links(client: httpx.AsyncClient, org: Org, call_id: str) -> dict[str, str]:
    data: dict[str, str] = ok(
        await client.get(f"/v1/calls/{call_id}/calendar-links", headers=org.headers)
    )
    return data


async def _ics(
    client: httpx.AsyncClient, org: Org, call_id: str, headers: dict[str, str] | None = None
) -> Event:
    r = await client.get(f"/v1/calls/{call_id}/ics", headers=headers or org.headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/calendar"), r.headers
    calendar = Calendar.from_ical(r.content)
    assert isinstance(calendar, Calendar)
    assert calendar["VERSION"] == "2.0"
    assert calendar.get("PRODID")
    events = calendar.walk("VEVENT")
    assert len(events) == 1, r.text
    event = events[0]
    assert isinstance(event, Event)
    return event


# --- calendar links ------------------------------------------------------------------------------
async def test_calendar_links_match_the_call(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    start = day(4, 15, 30)
    end = start + timedelta(minutes=45)
    call, closer, lead = await _book(client, org, session, start)
    links = await _links(client, org, call["id"])
    assert set(links) == {"google", "outlook", "office365", "yahoo", "ics"}

    google = urlsplit(links["google"])
    assert (google.scheme, google.netloc) == ("https", "calendar.google.com")
    q = _query(links["google"])
    assert q["action"] == "TEMPLATE"
    assert q["dates"] == f"{_stamp(start)}/{_stamp(end)}"
    assert q["dates"] == f"{start:%Y%m%dT%H%M%S}Z/{end:%Y%m%dT%H%M%S}Z"
    assert "Lee Lead" in q["text"]
    assert call["conferencing_link"] in q["details"]
    assert q["location"] == call["conferencing_link"]

    for key, host in (("outlook", "outlook.live.com"), ("office365", "outlook.office.com")):
        parts = urlsplit(links[key])
        assert (parts.scheme, parts.netloc) == ("https", host), links[key]
        q = _query(links[key])
        assert q["rru"] == "addevent"
        assert q["startdt"] == iso(start)
        assert q["enddt"] == iso(end)
        assert "Lee Lead" in q["subject"]
        assert q["location"] == call["conferencing_link"]

    yahoo = urlsplit(links["yahoo"])
    assert (yahoo.scheme, yahoo.netloc) == ("https", "calendar.yahoo.com")
    q = _query(links["yahoo"])
    assert (q["st"], q["et"]) == (_stamp(start), _stamp(end))
    assert "Lee Lead" in q["title"]

    assert links["ics"].startswith(f"{PUBLIC_BASE_URL}/ics/{call['id']}."), links["ics"]
    assert closer.id == call["closer_id"]
    assert lead.id == call["lead_id"]


async def test_calendar_links_follow_a_reschedule(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    call, _, _ = await _book(client, org, session, day(4, 15))
    new_start = day(5, 9, 15)
    r = await client.post(
        f"/v1/calls/{call['id']}/reschedule",
        headers=org.headers,
        json={"scheduled_at": iso(new_start), "duration_minutes": 60},
    )
    ok(r)
    q = _query((await _links(client, org, call["id"]))["google"])
    assert q["dates"] == f"{_stamp(new_start)}/{_stamp(new_start + timedelta(hours=1))}"


async def test_calendar_links_of_an_intent_call_are_409(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    lead = await create_lead(session, org)
    call = await create_call(session, org, lead=lead, closer=None, call_kind="intent")
    r = await client.get(f"/v1/calls/{call.id}/calendar-links", headers=org.headers)
    error(r, 409, "CALL_NOT_SCHEDULED")
    error(
        await client.get(f"/v1/calls/{call.id}/ics", headers=org.headers), 409, "CALL_NOT_SCHEDULED"
    )


async def test_calendar_links_of_a_cancelled_call_are_409(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    call, _, _ = await _book(client, org, session, day(4, 15))
    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))
    r = await client.get(f"/v1/calls/{call['id']}/calendar-links", headers=org.headers)
    error(r, 409, "CALL_CANCELLED")


async def test_unknown_or_foreign_calls_are_404(
    client: httpx.AsyncClient, org: Org, other_org: Org, session: Any
) -> None:
    closer = await create_member(session, other_org)
    lead = await create_lead(session, other_org)
    theirs = await create_call(session, other_org, lead=lead, closer=closer)
    for call_id in ("call_missing", theirs.id):
        for path in ("calendar-links", "ics"):
            r = await client.get(f"/v1/calls/{call_id}/{path}", headers=org.headers)
            error(r, 404, "CALL_NOT_FOUND")
    ok(await client.get(f"/v1/calls/{theirs.id}/calendar-links", headers=other_org.headers))


async def test_read_scope_reads_links_and_ics(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    call, _, _ = await _book(client, org, session, day(4, 15))
    read = org.auth("read")
    ok(await client.get(f"/v1/calls/{call['id']}/calendar-links", headers=read))
    await _ics(client, org, call["id"], headers=read)
    r = await client.get(f"/v1/calls/{call['id']}/ics")
    error(r, 401, r.json()["code"])


# --- ics -----------------------------------------------------------------------------------------
async def test_ics_describes_the_call(client: httpx.AsyncClient, org: Org, session: Any) -> None:
    start = day(4, 15, 30)
    call, closer, _ = await _book(client, org, session, start)
    r = await client.get(f"/v1/calls/{call['id']}/ics", headers=org.headers)
    assert f"{call['id']}.ics" in r.headers.get("content-disposition", "")
    event = await _ics(client, org, call["id"])
    assert event.decoded("DTSTART") == start
    assert event.decoded("DTEND") == start + timedelta(minutes=45)
    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(event["SEQUENCE"]) == "0"
    assert call["id"] in str(event["UID"])
    assert "Lee Lead" in str(event["SUMMARY"])
    assert str(event["LOCATION"]) == call["conferencing_link"]
    attendee = event["ATTENDEE"]
    assert not isinstance(attendee, list)
    assert str(attendee).lower() == "mailto:lee.lead@example.com"
    assert str(event["ORGANIZER"]).lower() == f"mailto:{closer.email}".lower()
    assert event.get("DTSTAMP") is not None


async def test_ics_uid_is_stable_and_sequence_grows_with_every_change(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    start = day(4, 15)
    call, _, _ = await _book(client, org, session, start)
    other = await create_member(session, org)
    first = await _ics(client, org, call["id"])
    uid, sequences = str(first["UID"]), [int(first["SEQUENCE"])]

    # Reading twice changes nothing.
    assert int((await _ics(client, org, call["id"]))["SEQUENCE"]) == sequences[0]

    moved = day(5, 10)
    ok(
        await client.post(
            f"/v1/calls/{call['id']}/reschedule",
            headers=org.headers,
            json={"scheduled_at": iso(moved), "reason": "lead asked"},
        )
    )
    event = await _ics(client, org, call["id"])
    assert str(event["UID"]) == uid
    assert event.decoded("DTSTART") == moved
    assert event.decoded("DTEND") == moved + timedelta(minutes=45)
    sequences.append(int(event["SEQUENCE"]))

    ok(
        await client.post(
            f"/v1/calls/{call['id']}/reassign-closer",
            headers=org.headers,
            json={"new_closer_id": other.id},
        )
    )
    event = await _ics(client, org, call["id"])
    assert str(event["UID"]) == uid
    assert str(event["ORGANIZER"]).lower() == f"mailto:{other.email}".lower()
    sequences.append(int(event["SEQUENCE"]))

    ok(
        await client.post(
            f"/v1/calls/{call['id']}/auto-reassign", headers=org.headers, json={"reason": "x"}
        )
    )
    event = await _ics(client, org, call["id"])
    assert str(event["UID"]) == uid
    sequences.append(int(event["SEQUENCE"]))
    assert str(event["STATUS"]) == "CONFIRMED"

    # New notes change the event's description; a PATCH of other fields does not touch it.
    ok(await client.patch(f"/v1/calls/{call['id']}", headers=org.headers, json={"notes": "n"}))
    event = await _ics(client, org, call["id"])
    assert "n" in str(event["DESCRIPTION"])
    sequences.append(int(event["SEQUENCE"]))
    ok(
        await client.patch(
            f"/v1/calls/{call['id']}", headers=org.headers, json={"expected_deal_value": 1}
        )
    )
    assert int((await _ics(client, org, call["id"]))["SEQUENCE"]) == sequences[-1]

    ok(await client.post(f"/v1/calls/{call['id']}/cancel", headers=org.headers, json={}))
    event = await _ics(client, org, call["id"])
    assert str(event["UID"]) == uid
    assert str(event["STATUS"]) == "CANCELLED"
    assert event.decoded("DTSTART") == moved
    sequences.append(int(event["SEQUENCE"]))

    assert sequences == sorted(set(sequences)), sequences  # strictly increasing
    assert len(sequences) == 6


async def test_ics_of_a_call_without_a_lead_name(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    closer = await create_member(session, org)
    lead = await create_lead(session, org, full_name=None, email="anon@example.com")
    call = await create_call(session, org, lead=lead, closer=closer, scheduled_at=day(4, 12))
    event = await _ics(client, org, call.id)
    assert "anon@example.com" in str(event["SUMMARY"])
    assert str(event["ATTENDEE"]).lower() == "mailto:anon@example.com"
    q = _query((await _links(client, org, call.id))["google"])
    assert "anon@example.com" in q["text"]


# --- what reaches the lead (docs/architecture.md, "What is written to a calendar") --------------
NOTES = "INTERNAL-NOTES-budget-is-tight"
SUMMARY = "INTERNAL-SUMMARY-lead-will-churn"
ACTION = "INTERNAL-ACTION-chase-the-cfo"
TRANSCRIPT = "INTERNAL-TRANSCRIPT-we-overcharge"
FORM_LABEL = "INTERNAL-FORM-LABEL-annual-revenue"
FORM_ANSWER = "INTERNAL-FORM-ANSWER-12-million"
DEAL_VALUE = 987_654
PUBLIC = "Bring your numbers. We will walk through the plan together."
INTERNAL = (
    NOTES,
    SUMMARY,
    ACTION,
    TRANSCRIPT,
    FORM_LABEL,
    FORM_ANSWER,
    str(DEAL_VALUE),
    "9876.54",
    "9,876.54",
)


async def _book_with_internal_fields(
    client: httpx.AsyncClient, org: Org, session: Any, *, full_name: str | None = "Lee Lead"
) -> tuple[dict[str, Any], Any]:
    closer = await create_member(session, org, name="Casey Closer")
    lead = await create_lead(session, org, full_name=full_name, email="lee.lead@example.com")
    link = await create_link(client, org, [helpers.host(closer.id)], description=PUBLIC)
    body = {
        "lead_id": lead.id,
        "closer_id": closer.id,
        "booking_link_id": link["id"],
        "scheduled_at": iso(day(4, 15)),
        "duration_minutes": 30,
        "notes": NOTES,
        "expected_deal_value": DEAL_VALUE,
        "form_data": [{"field_id": "revenue", "label": FORM_LABEL, "value": FORM_ANSWER}],
    }
    call = ok(await client.post("/v1/calls", headers=org.headers, json=body), 201)
    patch = {
        "ai_summary": SUMMARY,
        "action_items": [{"title": ACTION}],
        "transcript_data": {
            "duration_seconds": 60,
            "segments": [{"start_seconds": 0, "end_seconds": 5, "text": TRANSCRIPT}],
        },
    }
    call = ok(await client.patch(f"/v1/calls/{call['id']}", headers=org.headers, json=patch))
    for value in (NOTES, SUMMARY, TRANSCRIPT, FORM_ANSWER):
        assert value in json.dumps(call)  # the call has them; the lead must not
    return call, lead


def _assert_nothing_internal(text: str) -> None:
    for value in INTERNAL:
        assert value not in text, value


async def test_internal_fields_never_reach_the_ics(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    call, _ = await _book_with_internal_fields(client, org, session)
    r = await client.get(f"/v1/calls/{call['id']}/ics", headers=org.headers)
    assert r.status_code == 200, r.text
    unfolded = r.content.decode().replace("\r\n ", "").replace("\r\n\t", "")
    _assert_nothing_internal(unfolded)
    event = await _ics(client, org, call["id"])
    for value in event.values():
        _assert_nothing_internal(str(value))
    assert str(event["SUMMARY"]) == "Lee Lead and Casey Closer"
    description = str(event["DESCRIPTION"])
    assert call["conferencing_link"] in description
    assert PUBLIC in description
    assert str(event["LOCATION"]) == call["conferencing_link"]
    assert str(event["UID"]) == f"{call['id']}@closerdesk"
    assert str(event["SEQUENCE"]) == "0"


async def test_internal_fields_never_reach_the_links(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    call, _ = await _book_with_internal_fields(client, org, session)
    links = await _links(client, org, call["id"])
    bodies = {"google": "details", "outlook": "body", "office365": "body", "yahoo": "desc"}
    titles = {"google": "text", "outlook": "subject", "office365": "subject", "yahoo": "title"}
    for name, url in links.items():
        _assert_nothing_internal(url)
        if name == "ics":
            continue
        q = _query(url)
        for value in q.values():
            _assert_nothing_internal(value)
        assert q[titles[name]] == "Lee Lead and Casey Closer", name
        assert call["conferencing_link"] in q[bodies[name]], name
        assert PUBLIC in q[bodies[name]], name


async def test_a_lead_without_a_name_is_named_by_email(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    call, _ = await _book_with_internal_fields(client, org, session, full_name=None)
    event = await _ics(client, org, call["id"])
    assert str(event["SUMMARY"]) == "lee.lead@example.com and Casey Closer"
    q = _query((await _links(client, org, call["id"]))["google"])
    assert q["text"] == "lee.lead@example.com and Casey Closer"


async def test_without_a_booking_link_the_description_is_the_join_link(
    client: httpx.AsyncClient, org: Org, session: Any
) -> None:
    call, _, _ = await _book(client, org, session, day(4, 15))
    event = await _ics(client, org, call["id"])
    assert str(event["DESCRIPTION"]) == f"Join: {call['conferencing_link']}"
    assert str(event["SUMMARY"]) == "Lee Lead and Casey Closer"

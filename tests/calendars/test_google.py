"""The Google Calendar provider against ``FakeGoogle`` (Google Calendar API v3's wire format)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from closerdesk.calendars import google
from closerdesk.calendars.google import (
    CALL_ID_PROPERTY,
    GoogleCalendar,
    GoogleNotification,
    event_intervals,
    is_refused,
    is_retryable,
    parse_notification,
    token_matches,
)
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    EventDraft,
    MirrorChange,
)
from closerdesk.config import Settings
from closerdesk.scheduling.intervals import Interval
from tests.calendars.fakes.google import FakeGoogle, google_error, rate_limited_body

USER = "closer@example.com"
ADDRESS = "https://closerdesk.test/hooks/google"


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=UTC)


WINDOW = Interval(at(1, 0), at(1, 0, month=4))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGoogle]:
    server = FakeGoogle()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh(fake: FakeGoogle) -> None:
    fake.reset()
    fake.add_user(USER)


def google_settings(fake: FakeGoogle, **overrides: object) -> Settings:
    values: dict[str, object] = {
        **fake.settings_overrides(),
        "calendar_timeout_seconds": 0.5,
        "calendar_retry_seconds": 3.0,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def provider(fake: FakeGoogle) -> AsyncIterator[GoogleCalendar]:
    calendar = GoogleCalendar(google_settings(fake))
    yield calendar
    await calendar.aclose()


def account(fake: FakeGoogle, user: str = USER, **credentials: str) -> CalendarAccount:
    fake.add_user(user)
    return CalendarAccount(
        connection_id=f"con_{user}",
        organization_id="org_test",
        member_id="mem_test",
        provider="google",
        calendar_id=credentials.pop("calendar_id", "primary"),
        credentials={"refresh_token": fake.oauth.grant(user), **credentials},
    )


async def connected(
    provider: GoogleCalendar, fake: FakeGoogle, **credentials: str
) -> CalendarAccount:
    return await provider.connect(account(fake, **credentials))


def draft(start: datetime, end: datetime, title: str = "Ada Lovelace and Grace") -> EventDraft:
    return EventDraft(
        call_id="call_01TEST",
        title=title,
        starts_at=start,
        ends_at=end,
        description="Join: http://closerdesk.test/meet/tok",
        location="http://closerdesk.test/meet/tok",
        attendees=("ada@example.org",),
    )


# --- connect ------------------------------------------------------------------------------------


async def test_connect_resolves_primary_to_the_calendar_id(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """calendarList.get on ``primary`` answers the calendar's real ``id`` (the user's
    address), asked with the bearer token the OAuth token endpoint issued for the refresh
    token; calendarList.get is what the ``calendar.calendarlist.readonly`` scope allows."""
    result = await connected(provider, fake)
    assert result.calendar_id == USER
    (asked,) = fake.received("GET /calendar/v3/users/me/calendarList/")
    assert asked.path == "/calendar/v3/users/me/calendarList/primary"
    token = asked.headers["authorization"].removeprefix("Bearer ")
    assert fake.oauth.access_tokens[token][0] == USER
    (refresh,) = fake.received("POST /token")
    assert refresh.form["grant_type"] == "refresh_token"


async def test_connect_named_calendar_and_unknown_calendar(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """calendarList.get on a secondary calendar id answers that id; an unknown one is 404
    ``notFound``: a CalendarError with Google's reason, not a refusal of the grant."""
    fake.add_calendar(USER, "sales@group.calendar.google.com")
    result = await connected(provider, fake, calendar_id="sales@group.calendar.google.com")
    assert result.calendar_id == "sales@group.calendar.google.com"
    with pytest.raises(CalendarError) as caught:
        await connected(provider, fake, calendar_id="nope@group.calendar.google.com")
    assert not isinstance(caught.value, CalendarAuthError)
    assert "404" in str(caught.value)
    assert "Not Found" in str(caught.value)


async def test_connect_refused_refresh_token(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """The token endpoint answers ``invalid_grant`` (RFC 6749 §5.2) for an unknown or revoked
    refresh token: CalendarAuthError with the reason, never the token itself."""
    bad = replace(account(fake), credentials={"refresh_token": "1//rt-not-issued"})
    with pytest.raises(CalendarAuthError) as caught:
        await provider.connect(bad)
    assert "invalid_grant" in str(caught.value)
    assert "1//rt-not-issued" not in str(caught.value)
    assert fake.received("GET /calendar/v3") == []


async def test_connect_forbidden_is_a_refusal(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """A 403 ``forbidden`` / ``insufficientPermissions`` (Handle API errors) is a refusal."""
    fake.fail(
        "GET /calendar/v3/users/me/calendarList/",
        403,
        google_error(403, "insufficientPermissions", "Insufficient Permission"),
    )
    with pytest.raises(CalendarAuthError, match="Insufficient Permission"):
        await connected(provider, fake)


async def test_connect_meet_on_a_calendar_without_meet(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """calendarList.get ``conferenceProperties.allowedConferenceSolutionTypes`` without
    ``hangoutsMeet``: a connection asking for Meet rooms is refused at connect."""
    fake.add_calendar(USER, "nomeet@group.calendar.google.com", meet=False)
    with pytest.raises(CalendarError, match="Google Meet"):
        await connected(
            provider,
            fake,
            calendar_id="nomeet@group.calendar.google.com",
            conferencing="google_meet",
        )
    assert (await connected(provider, fake, conferencing="google_meet")).calendar_id == USER


# --- events -------------------------------------------------------------------------------------


async def test_create_event_sends_no_email_and_marks_it_ours(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """events.insert: ``sendUpdates=none`` (Google emails no attendee), a base32hex client
    id, times in UTC, the lead as attendee, ``extendedProperties.private`` with the call id;
    no conference without Meet asked for."""
    acc = await connected(provider, fake)
    created = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    (insert,) = fake.received("POST /calendar/v3/calendars/")
    assert insert.path == f"/calendar/v3/calendars/{USER}/events"
    assert insert.query == {"sendUpdates": "none"}
    assert insert.headers["authorization"].startswith("Bearer ya29.")
    body = insert.json()
    assert body["id"] == created.event_id
    assert set(created.event_id) <= set("0123456789abcdefghijklmnopqrstuv")
    assert 5 <= len(created.event_id) <= 1024
    assert body["start"] == {"dateTime": "2027-03-04T10:00:00Z", "timeZone": "UTC"}
    assert body["end"]["dateTime"] == "2027-03-04T11:00:00Z"
    assert body["attendees"] == [{"email": "ada@example.org"}]
    assert body["extendedProperties"]["private"][CALL_ID_PROPERTY] == "call_01TEST"
    assert "conferenceData" not in body
    assert created.room_url is None
    assert fake.invitations == []
    (event,) = fake.events(USER)
    assert event["id"] == created.event_id
    assert event["summary"] == "Ada Lovelace and Grace"
    assert event["location"] == "http://closerdesk.test/meet/tok"


async def test_create_event_with_google_meet(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """With ``conferencing=google_meet``: ``conferenceDataVersion=1`` and
    ``conferenceData.createRequest`` (``hangoutsMeet``); the room is the event's
    ``hangoutLink`` (events.insert, conferenceData)."""
    acc = await connected(provider, fake, conferencing="google_meet")
    created = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    (insert,) = fake.received("POST /calendar/v3/calendars/")
    assert insert.query == {"sendUpdates": "none", "conferenceDataVersion": "1"}
    request = insert.json()["conferenceData"]["createRequest"]
    assert request["conferenceSolutionKey"] == {"type": "hangoutsMeet"}
    assert request["requestId"]
    (event,) = fake.events(USER)
    assert created.room_url == event["hangoutLink"]
    assert str(created.room_url).startswith("https://meet.google.com/")


async def test_create_event_waits_for_a_pending_meet_room(
    provider: GoogleCalendar, fake: FakeGoogle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Conference creation is asynchronous (``createRequest.status.statusCode: pending``):
    the event is read again (events.get) and the room taken from its video entry point."""
    monkeypatch.setattr(google, "CONFERENCE_POLL_SECONDS", (0.01, 0.01))
    fake.conference_pending = True
    acc = await connected(provider, fake, conferencing="google_meet")
    created = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    assert len(fake.received(f"GET /calendar/v3/calendars/{USER}/events/")) == 1
    entry = fake.event(USER, created.event_id)["conferenceData"]["entryPoints"][0]
    assert created.room_url == entry["uri"]


async def test_create_retried_after_a_timeout_makes_one_event(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """events.insert with a client-chosen id is idempotent: the first attempt is done but
    answered after the client's timeout, the retry meets 409 ``duplicate``, and the event
    the first attempt made is read back and returned: one event, not two."""
    acc = await connected(provider, fake)
    fake.answer_late(f"POST /calendar/v3/calendars/{USER}/events", 1.0)
    created = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    inserts = fake.received(f"POST /calendar/v3/calendars/{USER}/events")
    assert len(inserts) == 2
    assert inserts[0].json()["id"] == inserts[1].json()["id"] == created.event_id
    assert [e["id"] for e in fake.events(USER)] == [created.event_id]


async def test_create_that_never_answers_fails_without_a_twin(fake: FakeGoogle) -> None:
    """Every attempt stalls past ``calendar_timeout_seconds``: CalendarError once the retry
    budget is spent; the stalled inserts all carry one id, so at most one event exists."""
    calendar = GoogleCalendar(google_settings(fake, calendar_retry_seconds=1.5))
    try:
        acc = await connected(calendar, fake)
        fake.fail(f"POST /calendar/v3/calendars/{USER}/events", delay=0.8, times=20, then_pass=True)
        with pytest.raises(CalendarError, match="timed out"):
            await calendar.create_event(acc, draft(at(4, 10), at(4, 11)))
    finally:
        await calendar.aclose()
    inserts = fake.received(f"POST /calendar/v3/calendars/{USER}/events")
    assert len(inserts) >= 2
    assert len({r.json()["id"] for r in inserts}) == 1
    await asyncio.sleep(0.9)  # the last stalled insert lands
    assert len(fake.events(USER)) == 1


async def test_move_event_patches_in_place(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """events.patch with ``sendUpdates=none``: same id, new time and title."""
    acc = await connected(provider, fake)
    created = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    await provider.move_event(acc, created.event_id, draft(at(5, 14), at(5, 15), title="Moved"))
    (patch,) = fake.received("PATCH /calendar/v3/calendars/")
    assert patch.path == f"/calendar/v3/calendars/{USER}/events/{created.event_id}"
    assert patch.query == {"sendUpdates": "none"}
    assert "id" not in patch.json()
    event = fake.event(USER, created.event_id)
    assert event["start"]["dateTime"] == "2027-03-05T14:00:00Z"
    assert event["summary"] == "Moved"
    assert event["sequence"] == 1
    assert fake.invitations == []


async def test_move_puts_back_an_event_the_closer_deleted(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """A deleted event is ``status: cancelled``; the patch sets ``status: confirmed``."""
    acc = await connected(provider, fake)
    created = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    fake.remove_event(USER, created.event_id)
    await provider.move_event(acc, created.event_id, draft(at(4, 12), at(4, 13)))
    assert fake.event(USER, created.event_id)["status"] == "confirmed"


async def test_move_unknown_event_is_an_error(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """events.patch on an unknown id answers 404 ``notFound``."""
    acc = await connected(provider, fake)
    with pytest.raises(CalendarError, match="404"):
        await provider.move_event(acc, "cdunknown00", draft(at(4, 12), at(4, 13)))


async def test_cancel_event_and_already_gone(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """events.delete (``sendUpdates=none``) answers 204; deleting it again answers 410
    ``deleted`` and an unknown id 404 ``notFound``: both count as done."""
    acc = await connected(provider, fake)
    created = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    await provider.cancel_event(acc, created.event_id)
    assert fake.events(USER) == []
    assert fake.event(USER, created.event_id)["status"] == "cancelled"
    await provider.cancel_event(acc, created.event_id)
    await provider.cancel_event(acc, "cdneverexisted")
    deletes = fake.received("DELETE /calendar/v3/calendars/")
    assert [d.query for d in deletes] == [{"sendUpdates": "none"}] * 3
    assert fake.invitations == []


# --- busy ---------------------------------------------------------------------------------------


async def test_busy_counts_foreign_events_only(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """freeBusy.query reports our own event too; events.list (``singleEvents=true``,
    ``timeMin``/``timeMax``) tells it apart, and free (transparent) events never count.
    Busy time is clipped to the interval asked."""
    acc = await connected(provider, fake)
    await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    fake.add_busy(USER, at(4, 8), at(4, 9, 30))
    fake.add_busy(USER, at(4, 12), at(4, 13), free=True, title="Focus")
    fake.add_busy(USER, at(4, 14), at(4, 15), status="cancelled")
    busy = await provider.busy(acc, at(4, 9), at(4, 16))
    assert busy == [Interval(at(4, 9), at(4, 9, 30))]
    (query,) = fake.received("POST /calendar/v3/freeBusy")
    assert query.json()["items"] == [{"id": USER}]
    assert query.json()["timeMin"] == "2027-03-04T09:00:00Z"
    assert query.json()["timeMax"] == "2027-03-04T16:00:00Z"
    (listing,) = fake.received("GET /calendar/v3/calendars/")
    assert listing.query["singleEvents"] == "true"
    assert listing.query["timeMin"] == "2027-03-04T09:00:00Z"
    assert listing.query["timeMax"] == "2027-03-04T16:00:00Z"


async def test_busy_only_own_events_is_free(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """Our own event alone: freeBusy says busy, events.list shows it is ours: not busy."""
    acc = await connected(provider, fake)
    await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    assert await provider.busy(acc, at(4, 9), at(4, 12)) == []


async def test_busy_free_calendar_asks_freebusy_only(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """No busy period in the freeBusy answer: no events.list is needed."""
    acc = await connected(provider, fake)
    fake.add_busy(USER, at(5, 8), at(5, 9))
    assert await provider.busy(acc, at(4, 9), at(4, 12)) == []
    assert fake.received("GET /calendar/v3/calendars/") == []  # no events.list


async def test_busy_declined_and_recurring(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """A meeting the owner declined is not busy; a recurring series counts by its instances."""
    acc = await connected(provider, fake)
    fake.add_busy(
        USER,
        at(4, 9),
        at(4, 10),
        attendees=[{"email": USER, "self": True, "responseStatus": "declined"}],
    )
    fake.add_recurring(USER, at(1, 11), at(1, 12), count=10, freq="DAILY")
    busy = await provider.busy(acc, at(4, 8), at(5, 12))
    assert busy == [Interval(at(4, 11), at(4, 12)), Interval(at(5, 11), at(5, 12))]


async def test_busy_is_bounded_by_what_freebusy_reports(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """freeBusy.query is the authority on busy time (it knows, e.g., what the owner
    declined); events.list only takes our own events out of it: a foreign event longer than
    the reported period counts only within it."""
    acc = await connected(provider, fake)
    fake.add_busy(USER, at(4, 8), at(4, 10))
    fake.fail(
        "POST /calendar/v3/freeBusy",
        200,
        {
            "kind": "calendar#freeBusy",
            "timeMin": "2027-03-04T07:00:00Z",
            "timeMax": "2027-03-04T12:00:00Z",
            "calendars": {
                USER: {"busy": [{"start": "2027-03-04T08:30:00Z", "end": "2027-03-04T09:00:00Z"}]}
            },
        },
    )
    assert await provider.busy(acc, at(4, 7), at(4, 12)) == [Interval(at(4, 8, 30), at(4, 9))]


async def test_busy_freebusy_calendar_error(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """freeBusy.query answers 200 with ``calendars[id].errors`` (``notFound``) for a calendar
    the user cannot see: the calendar is gone, a refusal."""
    acc = replace(await connected(provider, fake), calendar_id="gone@group.calendar.google.com")
    with pytest.raises(CalendarAuthError, match="notFound"):
        await provider.busy(acc, at(4, 8), at(4, 12))


# --- sync ---------------------------------------------------------------------------------------


async def test_sync_full_pages_then_incremental(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """Full sync: events.list with ``singleEvents=true`` and ``timeMin``/``timeMax`` = window,
    paged with ``pageToken`` to the ``nextSyncToken``; our own, free and out-of-window events
    give nothing, recurring events their instances, all-day events their UTC day.
    Incremental: only ``syncToken`` (no timeMin/timeMax), changes and deletions keyed by id."""
    acc = await connected(provider, fake)
    own = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    dentist = fake.add_busy(USER, at(4, 8), at(4, 9))
    fake.add_busy(USER, at(4, 12), at(4, 13), free=True)
    fake.add_busy(USER, at(2, 8, month=5), at(2, 9, month=5))  # after the window
    edge = fake.add_busy(USER, at(28, 22, month=2), at(1, 2))  # across the window's start
    series = fake.add_recurring(USER, at(29, 9, month=3), at(29, 10, month=3), count=3)
    holiday = fake.add_all_day(USER, date(2027, 3, 17))
    fake.page_size = 2

    batch = await provider.sync(acc, None, WINDOW)
    assert batch.full is True
    assert set(batch.changes) == {
        MirrorChange(dentist, (Interval(at(4, 8), at(4, 9)),)),
        MirrorChange(edge, (Interval(at(1, 0), at(1, 2)),)),
        MirrorChange(f"{series}_20270329T090000Z", (Interval(at(29, 9), at(29, 10)),)),
        MirrorChange(holiday, (Interval(at(17, 0), at(18, 0)),)),
    }
    listings = fake.received(f"GET /calendar/v3/calendars/{USER}/events")
    assert len(listings) == 3  # six events of the window, two a page
    assert all(r.query["singleEvents"] == "true" for r in listings)
    assert all(r.query["timeMin"] == "2027-03-01T00:00:00Z" for r in listings)
    assert all(r.query["timeMax"] == "2027-04-01T00:00:00Z" for r in listings)
    assert "pageToken" not in listings[0].query
    assert all("pageToken" in r.query for r in listings[1:])
    assert batch.state is not None
    assert json.loads(batch.state)["calendar"] == USER

    fake.requests.clear()
    fake.remove_event(USER, dentist)
    fake.update_event(USER, holiday, transparency="transparent")
    lunch = fake.add_busy(USER, at(6, 12), at(6, 13))
    await provider.move_event(acc, own.event_id, draft(at(7, 10), at(7, 11)))
    again = await provider.sync(acc, batch.state, WINDOW)
    assert again.full is False
    assert set(again.changes) == {
        MirrorChange(dentist),
        MirrorChange(holiday),
        MirrorChange(lunch, (Interval(at(6, 12), at(6, 13)),)),
        MirrorChange(own.event_id),
    }
    listings = fake.received(f"GET /calendar/v3/calendars/{USER}/events")
    assert all("syncToken" in r.query for r in listings)
    assert not any("timeMin" in r.query or "timeMax" in r.query for r in listings)

    quiet = await provider.sync(acc, again.state, WINDOW)
    assert (quiet.full, quiet.changes) == (False, ())


async def test_sync_expired_token_is_a_full_sync(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """A sync token Google no longer accepts answers 410 Gone (``fullSyncRequired``, sync
    guide): the provider starts over with a full batch."""
    acc = await connected(provider, fake)
    dentist = fake.add_busy(USER, at(4, 8), at(4, 9))
    first = await provider.sync(acc, None, WINDOW)
    fake.expire_sync_tokens(USER)
    fake.requests.clear()
    batch = await provider.sync(acc, first.state, WINDOW)
    assert batch.full is True
    assert batch.changes == (MirrorChange(dentist, (Interval(at(4, 8), at(4, 9)),)),)
    first_listing, *rest = fake.received(f"GET /calendar/v3/calendars/{USER}/events")
    assert "syncToken" in first_listing.query
    assert rest
    assert "syncToken" not in rest[0].query
    assert "timeMin" in rest[0].query
    assert batch.state != first.state


async def test_sync_unreadable_or_foreign_state_is_full(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """A state of another calendar, or garbage, never reaches Google as a sync token."""
    acc = await connected(provider, fake)
    first = await provider.sync(acc, None, WINDOW)
    assert first.state is not None
    other = json.dumps({**json.loads(first.state), "calendar": "other@example.com"})
    for state in (other, "not json"):
        fake.requests.clear()
        assert (await provider.sync(acc, state, WINDOW)).full is True
        assert not any("syncToken" in r.query for r in fake.received("GET /calendar/v3"))


async def test_sync_recurring_series_changes(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """With ``singleEvents=true`` a deleted series comes back as its cancelled instances (each
    key emptied); a listing naming the series itself (its instances cannot be told apart)
    makes the provider sync in full."""
    acc = await connected(provider, fake)
    series = fake.add_recurring(USER, at(1, 9), at(1, 10), count=2, freq="DAILY")
    first = await provider.sync(acc, None, WINDOW)
    keys = {f"{series}_20270301T090000Z", f"{series}_20270302T090000Z"}
    assert {c.key for c in first.changes} == keys
    fake.remove_event(USER, series)
    second = await provider.sync(acc, first.state, WINDOW)
    assert second.full is False
    assert set(second.changes) == {MirrorChange(key) for key in keys}

    dentist = fake.add_busy(USER, at(4, 8), at(4, 9))
    fake.fail(
        "GET /calendar/v3/calendars/",
        200,
        {
            "kind": "calendar#events",
            "items": [{"id": series, "status": "cancelled"}],
            "nextSyncToken": "unused",
        },
    )
    third = await provider.sync(acc, second.state, WINDOW)
    assert third.full is True
    assert third.changes == (MirrorChange(dentist, (Interval(at(4, 8), at(4, 9)),)),)


# --- failures -----------------------------------------------------------------------------------


async def test_expired_access_token_is_refreshed_once(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """401 ``authError`` (Invalid Credentials) → one refresh at the token endpoint → the same
    request again with the new token succeeds."""
    acc = await connected(provider, fake)
    fake.oauth.expire_access_tokens()
    fake.requests.clear()
    assert await provider.busy(acc, at(4, 8), at(4, 9)) == []
    first, second = fake.received("POST /calendar/v3/freeBusy")
    assert first.headers["authorization"] != second.headers["authorization"]
    assert len(fake.received("POST /token")) == 1


async def test_revoked_grant_is_a_refusal(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """The user removed closerdesk's access: the API answers 401, the refresh answers
    ``invalid_grant``: CalendarAuthError, without the refresh token in the message."""
    acc = await connected(provider, fake)
    fake.revoke(USER)
    with pytest.raises(CalendarAuthError) as caught:
        await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    assert "invalid_grant" in str(caught.value)
    assert acc.credentials["refresh_token"] not in str(caught.value)
    assert fake.events(USER) == []


async def test_429_retry_after_is_honoured(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """429 with ``Retry-After: 1``: the request is sent again after at least a second."""
    acc = await connected(provider, fake)
    fake.fail(
        "POST /calendar/v3/freeBusy",
        429,
        google_error(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits"),
        headers={"Retry-After": "1"},
    )
    started = time.monotonic()
    assert await provider.busy(acc, at(4, 8), at(4, 9)) == []
    assert time.monotonic() - started >= 1.0
    assert len(fake.received("POST /calendar/v3/freeBusy")) == 2


async def test_403_rate_limit_is_retried_not_refused(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """Google answers some rate limits with 403 ``rateLimitExceeded`` /
    ``userRateLimitExceeded`` (Handle API errors): retried, then the call succeeds."""
    acc = await connected(provider, fake)
    fake.fail("POST /calendar/v3/calendars/", 403, rate_limited_body("userRateLimitExceeded"))
    fake.fail("POST /calendar/v3/calendars/", 403, rate_limited_body("rateLimitExceeded"))
    created = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    assert [e["id"] for e in fake.events(USER)] == [created.event_id]
    assert len(fake.received("POST /calendar/v3/calendars/")) == 3


async def test_403_daily_limit_is_a_failure_not_a_refusal(
    provider: GoogleCalendar, fake: FakeGoogle
) -> None:
    """403 ``dailyLimitExceeded`` is closerdesk's project quota: CalendarError, not retried,
    and not CalendarAuthError (the member's grant is fine)."""
    acc = await connected(provider, fake)
    fake.fail(
        "POST /calendar/v3/freeBusy",
        403,
        google_error(403, "dailyLimitExceeded", "Daily Limit Exceeded", domain="usageLimits"),
    )
    with pytest.raises(CalendarError, match="Daily Limit Exceeded") as caught:
        await provider.busy(acc, at(4, 8), at(4, 9))
    assert not isinstance(caught.value, CalendarAuthError)
    assert len(fake.received("POST /calendar/v3/freeBusy")) == 1


async def test_5xx_is_retried(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """503 ``backendError`` is retried with backoff; the next attempt succeeds."""
    acc = await connected(provider, fake)
    fake.fail("PATCH /calendar/v3/", 503, google_error(503, "backendError", "Backend Error"))
    created = await provider.create_event(acc, draft(at(4, 10), at(4, 11)))
    await provider.move_event(acc, created.event_id, draft(at(4, 12), at(4, 13)))
    assert len(fake.received("PATCH /calendar/v3/")) == 2
    assert fake.event(USER, created.event_id)["start"]["dateTime"] == "2027-03-04T12:00:00Z"


async def test_5xx_until_the_budget_is_spent(fake: FakeGoogle) -> None:
    """A Google that keeps answering 500 fails the request once the retry budget is spent."""
    calendar = GoogleCalendar(google_settings(fake, calendar_retry_seconds=1.0))
    try:
        acc = await connected(calendar, fake)
        fake.fail("POST /calendar/v3/freeBusy", 500, times=50)
        with pytest.raises(CalendarError, match="did not answer in time: HTTP 500"):
            await calendar.busy(acc, at(4, 8), at(4, 9))
    finally:
        await calendar.aclose()
    assert len(fake.received("POST /calendar/v3/freeBusy")) >= 2


# --- push ---------------------------------------------------------------------------------------


async def test_watch_notifications_and_unwatch(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """events.watch opens a ``web_hook`` channel (UUID id, our token, ``params.ttl``) whose
    ``expiration`` (ms) becomes ``expires_at``; Google first posts a ``sync`` message, then
    ``exists`` after a change; channels.stop ends it, and stopping it again (404) is fine."""
    acc = await connected(provider, fake)
    channel = await provider.watch(acc, ADDRESS, "tok-123")
    (request,) = fake.received("POST /calendar/v3/calendars/")
    assert request.path == f"/calendar/v3/calendars/{USER}/events/watch"
    body = request.json()
    assert uuid.UUID(body["id"]) == uuid.UUID(channel.channel_id)
    assert body["type"] == "web_hook"
    assert body["address"] == ADDRESS
    assert body["token"] == "tok-123"
    assert int(body["params"]["ttl"]) == google.WATCH_TTL_SECONDS
    expected = datetime.now(UTC) + timedelta(seconds=google.WATCH_TTL_SECONDS)
    assert abs((channel.expires_at - expected).total_seconds()) < 5
    assert channel.resource_id == fake.channels[channel.channel_id].resource_id

    (sync,) = fake.take_notifications()
    path, headers, payload = sync
    assert (path, payload) == ("/hooks/google", b"")
    note = parse_notification(headers)
    assert note == GoogleNotification(channel.channel_id, "tok-123", channel.resource_id, "sync", 1)
    assert fake.take_notifications() == []

    fake.add_busy(USER, at(4, 8), at(4, 9))
    (change,) = fake.take_notifications()
    assert parse_notification(change[1]) == GoogleNotification(
        channel.channel_id, "tok-123", channel.resource_id, "exists", 2
    )

    await provider.unwatch(acc, channel)
    assert fake.channels == {}
    (stop,) = fake.received("POST /calendar/v3/channels/stop")
    assert stop.json() == {"id": channel.channel_id, "resourceId": channel.resource_id}
    await provider.unwatch(acc, channel)  # already stopped: 404, fine
    fake.add_busy(USER, at(5, 8), at(5, 9))
    assert fake.take_notifications() == []


async def test_watch_refused_address(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """Google only posts to HTTPS addresses: a plain-HTTP one is a 400, with Google's reason."""
    acc = await connected(provider, fake)
    fake.require_https = True
    with pytest.raises(CalendarError, match="HTTPS"):
        await provider.watch(acc, "http://closerdesk.test/hooks/google", "tok")
    assert fake.channels == {}


async def test_watch_timeout_is_not_retried(provider: GoogleCalendar, fake: FakeGoogle) -> None:
    """events.watch is a POST Google does not deduplicate: a timed-out one is not sent again
    (a second channel would be opened): CalendarError after one attempt."""
    acc = await connected(provider, fake)
    fake.fail("events/watch", delay=1.0, then_pass=True)
    with pytest.raises(CalendarError, match="timed out"):
        await provider.watch(acc, ADDRESS, "tok")
    assert len(fake.received("events/watch")) == 1


# --- the fake itself ----------------------------------------------------------------------------


async def test_fake_answers_like_google_to_bad_requests(fake: FakeGoogle) -> None:
    """The fake's own checks, so tests can rely on them: no bearer token → 401 ``authError``;
    ``syncToken`` with ``timeMin`` → 400; a non-base32hex id → 400; a used id → 409
    ``duplicate`` (Handle API errors, events.list, events.insert)."""
    async with httpx.AsyncClient(base_url=f"{fake.url}/calendar/v3") as client:
        anonymous = await client.get("/users/me/calendarList/primary")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["errors"][0]["reason"] == "authError"
        token = (
            await client.post(
                f"{fake.url}/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": fake.oauth.grant(USER),
                    "client_id": fake.settings_overrides()["google_client_id"],
                    "client_secret": fake.settings_overrides()["google_client_secret"],
                },
            )
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        mixed = await client.get(
            "/calendars/primary/events",
            params={"syncToken": "x", "timeMin": "2027-03-01T00:00:00Z"},
            headers=auth,
        )
        assert mixed.status_code == 400
        event = {
            "start": {"dateTime": "2027-03-04T10:00:00Z"},
            "end": {"dateTime": "2027-03-04T11:00:00Z"},
        }
        bad_id = await client.post(
            "/calendars/primary/events", json={**event, "id": "Not_Base32"}, headers=auth
        )
        assert bad_id.status_code == 400
        first = await client.post(
            "/calendars/primary/events", json={**event, "id": "abcde12345"}, headers=auth
        )
        assert first.status_code == 200
        again = await client.post(
            "/calendars/primary/events", json={**event, "id": "abcde12345"}, headers=auth
        )
        assert again.status_code == 409
        assert again.json()["error"]["errors"][0]["reason"] == "duplicate"


# --- pure helpers -------------------------------------------------------------------------------


def test_parse_notification_reads_google_headers() -> None:
    """Push guide, "Understanding the notification message format": the X-Goog-* headers,
    whatever their case; a request without them is not a Google notification."""
    headers = {
        "x-goog-channel-id": "chan-1",
        "X-GOOG-CHANNEL-TOKEN": "secret-token",
        "X-Goog-Resource-Id": "res-1",
        "X-Goog-Resource-State": "not_exists",
        "X-Goog-Message-Number": "7",
        "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/calendars/x/events",
    }
    note = parse_notification(headers)
    assert note == GoogleNotification("chan-1", "secret-token", "res-1", "not_exists", 7)
    assert token_matches(note, "secret-token")
    assert not token_matches(note, "other")
    assert not token_matches(replace(note, token=""), "")
    assert parse_notification({}) is None
    assert parse_notification({**headers, "X-Goog-Resource-State": "exploded"}) is None
    del headers["X-Goog-Resource-Id"]
    assert parse_notification(headers) is None
    unnumbered = parse_notification(
        {"X-Goog-Channel-ID": "c", "X-Goog-Resource-ID": "r", "X-Goog-Resource-State": "sync"}
    )
    assert unnumbered == GoogleNotification("c", "", "r", "sync", 0)


def test_event_intervals_rules() -> None:
    """Events resource: ``start.dateTime`` with an offset (converted to UTC), ``start.date``
    for all-day (read as UTC days); ours, transparent, cancelled give nothing."""
    window = (at(1, 0), at(1, 0, month=4))
    timed = {
        "id": "a",
        "start": {"dateTime": "2027-03-04T10:00:00+01:00"},
        "end": {"dateTime": "2027-03-04T11:30:00+01:00"},
    }
    assert event_intervals(timed, *window) == [Interval(at(4, 9), at(4, 10, 30))]
    all_day = {"start": {"date": "2027-03-31"}, "end": {"date": "2027-04-02"}}
    assert event_intervals(all_day, *window) == [Interval(at(31, 0), at(1, 0, month=4))]
    ours = {**timed, "extendedProperties": {"private": {CALL_ID_PROPERTY: "call_1"}}}
    assert event_intervals(ours, *window) == []
    assert event_intervals({**timed, "transparency": "transparent"}, *window) == []
    assert event_intervals({"id": "x", "status": "cancelled"}, *window) == []


def test_error_classification() -> None:
    """Handle API errors: 403 rate limits are retried; 401 and other 403s are refusals;
    403 project quotas and 404s are neither."""

    def answer(status: int, reason: str | None = None) -> httpx.Response:
        body = google_error(status, reason, reason) if reason else None
        return httpx.Response(status, json=body)

    assert is_retryable(answer(429))
    assert is_retryable(answer(503))
    assert is_retryable(answer(403, "userRateLimitExceeded"))
    assert not is_refused(answer(403, "rateLimitExceeded"))
    assert is_refused(answer(401, "authError"))
    assert is_refused(answer(403, "forbidden"))
    assert not is_retryable(answer(403, "forbidden"))
    assert not is_refused(answer(403, "quotaExceeded"))
    assert not is_retryable(answer(404, "notFound"))
    assert not is_refused(answer(404, "notFound"))

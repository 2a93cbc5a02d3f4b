"""The CalDAV provider against real Radicale (no auth, htpasswd) and Xandikos servers."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import icalendar
import pytest

from closerdesk.calendars.caldav import CALL_ID_PROPERTY, CalDavCalendar, busy_intervals
from closerdesk.calendars.provider import (
    OWN_UID_SUFFIX,
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    EventDraft,
    SyncBatch,
)
from closerdesk.scheduling.intervals import Interval
from tests.calendars.servers import (
    DavCalendar,
    DavServer,
    foreign_event,
    free_port,
    weekly_event,
)


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=UTC)


def iv(start: datetime, end: datetime) -> Interval:
    return Interval(start, end)


WINDOW = Interval(at(1, 0), at(1, 0, month=4))


@pytest.fixture
def provider() -> CalDavCalendar:
    return CalDavCalendar(timeout=5)


def draft(start: datetime, end: datetime, sequence: int = 0) -> EventDraft:
    return EventDraft(
        call_id="call_01TEST",
        title="Ada Lovelace and Grace Hopper",
        starts_at=start,
        ends_at=end,
        description="Join: http://closerdesk.test/meet/tok",
        location="http://closerdesk.test/meet/tok",
        attendees=("ada@example.org",),
        sequence=sequence,
    )


def unconnected(credentials: dict[str, str]) -> CalendarAccount:
    return CalendarAccount(
        connection_id="con_test",
        organization_id="org_test",
        member_id="mem_test",
        provider="caldav",
        calendar_id="",
        credentials=credentials,
    )


def vevent(ics: str | None) -> icalendar.Event:
    assert ics is not None
    events = icalendar.Calendar.from_ical(ics).walk("VEVENT")
    assert len(events) == 1
    event: icalendar.Event = events[0]
    return event


# --- connect --------------------------------------------------------------------------------


async def test_connect_from_collection_url(
    provider: CalDavCalendar, dav_calendar: DavCalendar
) -> None:
    account = await provider.connect(unconnected(dav_calendar.credentials()))
    assert account.calendar_id == dav_calendar.url


@pytest.mark.parametrize("start_at", ["root", "principal"])
async def test_connect_discovers_first_event_calendar(
    provider: CalDavCalendar, dav_server: DavServer, start_at: str
) -> None:
    user = dav_server.new_user()
    tasks = dav_server.new_calendar(user, components=("VTODO",))
    events = dav_server.new_calendar(user)
    url = dav_server.root_url if start_at == "root" else user.principal_url

    account = await provider.connect(unconnected(events.credentials(url=url)))

    assert account.calendar_id.startswith(user.home_url)
    assert account.calendar_id != tasks.url
    if dav_server.kind != "xandikos":  # Xandikos' one principal holds every test's calendars
        assert account.calendar_id == events.url


async def test_connect_with_calendar_url(provider: CalDavCalendar, dav_server: DavServer) -> None:
    user = dav_server.new_user()
    tasks = dav_server.new_calendar(user, components=("VTODO",))
    events = dav_server.new_calendar(user)

    account = await provider.connect(
        unconnected(events.credentials(url=dav_server.root_url, calendar_url=events.url))
    )
    assert account.calendar_id == events.url

    with pytest.raises(CalendarError, match="accepts events") as refused:
        await provider.connect(
            unconnected(events.credentials(url=dav_server.root_url, calendar_url=tasks.url))
        )
    assert not isinstance(refused.value, CalendarAuthError)


async def test_wrong_password_is_an_auth_error(
    provider: CalDavCalendar, radicale_auth: DavServer
) -> None:
    user = radicale_auth.new_user(password="right-horse-battery")
    calendar = radicale_auth.new_calendar(user)
    credentials = calendar.credentials(url=radicale_auth.root_url, password="wrong-staple-9")

    with pytest.raises(CalendarAuthError) as refused:
        await provider.connect(unconnected(credentials))
    assert "Unauthorized" in str(refused.value) or "401" in str(refused.value)
    assert "wrong-staple-9" not in str(refused.value)

    with pytest.raises(CalendarAuthError):
        await provider.busy(calendar.account(password="wrong-staple-9"), at(1, 0), at(2, 0))


async def test_no_credentials_on_an_auth_server(
    provider: CalDavCalendar, radicale_auth: DavServer
) -> None:
    with pytest.raises(CalendarAuthError):
        await provider.connect(unconnected({"url": radicale_auth.root_url}))


async def test_unreachable_server(provider: CalDavCalendar) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(CalendarError) as failed:
        await provider.connect(unconnected({"url": url, "username": "a", "password": "pw-x1"}))
    assert not isinstance(failed.value, CalendarAuthError)
    assert "pw-x1" not in str(failed.value)


# --- events ---------------------------------------------------------------------------------


async def test_create_move_cancel(provider: CalDavCalendar, dav_calendar: DavCalendar) -> None:
    account = dav_calendar.account()

    event_id = (await provider.create_event(account, draft(at(2, 10), at(2, 11)))).event_id

    assert event_id.endswith(OWN_UID_SUFFIX)
    [path] = dav_calendar.hrefs()
    created = vevent(dav_calendar.get(path))
    assert str(created["UID"]) == event_id
    assert created.start == at(2, 10)
    assert created.end == at(2, 11)
    assert created.decoded("DTSTART").tzinfo is not None
    assert str(created["SUMMARY"]) == "Ada Lovelace and Grace Hopper"
    assert str(created["LOCATION"]) == "http://closerdesk.test/meet/tok"
    assert "meet/tok" in str(created["DESCRIPTION"])
    assert int(created["SEQUENCE"]) == 0
    assert str(created[CALL_ID_PROPERTY]) == "call_01TEST"
    attendee = created["ATTENDEE"]
    assert str(attendee).lower() == "mailto:ada@example.org"
    assert attendee.params["SCHEDULE-AGENT"] == "CLIENT"

    await provider.move_event(account, event_id, draft(at(3, 14), at(3, 15), sequence=1))

    assert dav_calendar.hrefs() == [path]
    moved = vevent(dav_calendar.get(path))
    assert str(moved["UID"]) == event_id
    assert (moved.start, moved.end) == (at(3, 14), at(3, 15))
    assert int(moved["SEQUENCE"]) == 1

    await provider.cancel_event(account, event_id)
    assert dav_calendar.hrefs() == []
    await provider.cancel_event(account, event_id)  # already gone: not an error


# --- busy -----------------------------------------------------------------------------------


async def test_busy(provider: CalDavCalendar, dav_calendar: DavCalendar) -> None:
    account = dav_calendar.account()
    dav_calendar.put_event(at(2, 9), at(2, 10))  # plain
    dav_calendar.put_event(at(2, 23), at(3, 1))  # crosses the end of the asked interval
    dav_calendar.put_ics(
        weekly_event(
            at(1, 12),
            at(1, 13),
            count=6,  # Mondays 1, 8, 15, 22, 29 March and 5 April
            exdates=[at(15, 12)],
            overrides=[(at(22, 12), at(23, 16), at(23, 17))],
        )
    )
    dav_calendar.put_event(at(4, 9), at(4, 10), transparent=True)
    dav_calendar.put_event(at(4, 11), at(4, 12), status="CANCELLED")
    dav_calendar.put_event(
        at(4, 13), at(4, 14), uid="someone-else", extra=[f"{CALL_ID_PROPERTY}:x"]
    )
    dav_calendar.put_ics(foreign_event(date(2027, 3, 5), date(2027, 3, 6)))  # all day
    await provider.create_event(account, draft(at(4, 15), at(4, 16)))  # ours

    busy = await provider.busy(account, at(1, 0), at(3, 0, month=4) - timedelta(hours=12))

    assert busy == [
        iv(at(1, 12), at(1, 13)),
        iv(at(2, 9), at(2, 10)),
        iv(at(2, 23), at(3, 1)),
        iv(at(5, 0), at(6, 0)),
        iv(at(8, 12), at(8, 13)),
        iv(at(23, 16), at(23, 17)),
        iv(at(29, 12), at(29, 13)),
    ]
    # Clipped to the asked interval; nothing outside it.
    assert await provider.busy(account, at(2, 9, 30), at(2, 23, 30)) == [
        iv(at(2, 9, 30), at(2, 10)),
        iv(at(2, 23), at(2, 23, 30)),
    ]
    assert await provider.busy(account, at(10, 0), at(12, 0)) == []


def test_busy_intervals_floating_and_all_day_are_utc() -> None:
    floating = foreign_event(at(2, 9), at(2, 10)).replace("0900Z", "0900").replace("1000Z", "1000")
    assert busy_intervals(floating, at(1, 0), at(3, 0)) == [iv(at(2, 9), at(2, 10))]
    two_days = foreign_event(date(2027, 3, 2), date(2027, 3, 4))
    assert busy_intervals(two_days, at(1, 0), at(3, 12)) == [iv(at(2, 0), at(3, 12))]
    ours = foreign_event(at(2, 9), at(2, 10), uid="evt_1" + OWN_UID_SUFFIX)
    assert busy_intervals(ours, at(1, 0), at(3, 0)) == []


# --- sync -----------------------------------------------------------------------------------


def changes_of(batch: SyncBatch) -> dict[str, tuple[Interval, ...]]:
    keys = [change.key for change in batch.changes]
    assert len(keys) == len(set(keys)), keys
    return {change.key: change.intervals for change in batch.changes}


@pytest.mark.parametrize("sync_collection", [True, False], ids=["sync-collection", "etag"])
async def test_sync_full_then_incremental(dav_calendar: DavCalendar, sync_collection: bool) -> None:
    provider = CalDavCalendar(timeout=5, sync_collection=sync_collection)
    account = dav_calendar.account()
    plain = dav_calendar.put_event(at(2, 9), at(2, 10), uid="plain@example.org")
    weekly = dav_calendar.put_ics(weekly_event(at(1, 12), at(1, 13), count=3, exdates=[at(8, 12)]))
    # Outside the window:
    later = dav_calendar.put_event(at(2, 9, month=6), at(2, 10, month=6), uid="later@example.org")
    own_id = (await provider.create_event(account, draft(at(3, 9), at(3, 10)))).event_id

    first = await provider.sync(account, None, WINDOW)

    assert first.full
    assert first.state is not None
    assert json.loads(first.state)["mode"] == ("sync" if sync_collection else "etag")
    assert changes_of(first) == {
        plain: (iv(at(2, 9), at(2, 10)),),
        weekly: (iv(at(1, 12), at(1, 13)), iv(at(15, 12), at(15, 13))),
    }

    unchanged = await provider.sync(account, first.state, WINDOW)
    assert unchanged == SyncBatch(state=unchanged.state, full=False, changes=())

    added = dav_calendar.put_event(at(10, 9), at(10, 11))
    batch = await provider.sync(account, unchanged.state, WINDOW)
    assert not batch.full
    assert changes_of(batch) == {added: (iv(at(10, 9), at(10, 11)),)}

    # Modified in place; moved into the window:
    dav_calendar.put_ics(
        foreign_event(at(2, 14), at(2, 15), uid="plain@example.org"), name=plain.rsplit("/", 1)[1]
    )
    dav_calendar.put_ics(
        foreign_event(at(20, 8), at(20, 9), uid="later@example.org"), name=later.rsplit("/", 1)[1]
    )
    batch = await provider.sync(account, batch.state, WINDOW)
    assert changes_of(batch) == {
        plain: (iv(at(2, 14), at(2, 15)),),
        later: (iv(at(20, 8), at(20, 9)),),
    }

    dav_calendar.delete(weekly)
    dav_calendar.put_ics(  # now free
        foreign_event(at(2, 14), at(2, 15), uid="plain@example.org", transparent=True),
        name=plain.rsplit("/", 1)[1],
    )
    batch = await provider.sync(account, batch.state, WINDOW)
    assert changes_of(batch) == {weekly: (), plain: ()}

    await provider.move_event(account, own_id, draft(at(4, 9), at(4, 10), sequence=1))
    batch = await provider.sync(account, batch.state, WINDOW)
    assert all(change.intervals == () for change in batch.changes)  # ours: never busy

    final = await provider.sync(account, batch.state, WINDOW)
    assert final.changes == ()


async def test_sync_without_sync_token_property_compares_etags(
    provider: CalDavCalendar, dav_calendar: DavCalendar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server without ``DAV:sync-token`` (RFC 6578 not supported) is synced by ctag/ETags."""
    monkeypatch.setattr(CalDavCalendar, "_sync_token", lambda *_: None)
    account = dav_calendar.account()
    first = await provider.sync(account, None, WINDOW)
    assert first.state is not None
    assert json.loads(first.state)["mode"] == "etag"

    added = dav_calendar.put_event(at(2, 9), at(2, 10))
    batch = await provider.sync(account, first.state, WINDOW)

    assert changes_of(batch) == {added: (iv(at(2, 9), at(2, 10)),)}


async def test_sync_window_moves_forward(
    provider: CalDavCalendar, dav_calendar: DavCalendar
) -> None:
    account = dav_calendar.account()
    april = dav_calendar.put_event(at(3, 9, month=4), at(3, 10, month=4))
    first = await provider.sync(account, None, WINDOW)
    assert first.changes == ()

    later = Interval(at(15, 0), at(15, 0, month=4))
    batch = await provider.sync(account, first.state, later)

    assert not batch.full
    assert changes_of(batch) == {april: (iv(at(3, 9, month=4), at(3, 10, month=4)),)}


async def test_sync_expired_token_gives_a_full_batch(
    provider: CalDavCalendar, dav_calendar: DavCalendar
) -> None:
    account = dav_calendar.account()
    plain = dav_calendar.put_event(at(2, 9), at(2, 10))
    first = await provider.sync(account, None, WINDOW)
    assert first.state is not None
    state = json.loads(first.state)
    state["token"] = "http://example.org/sync/expired-0"

    batch = await provider.sync(account, json.dumps(state), WINDOW)

    assert batch.full
    assert changes_of(batch) == {plain: (iv(at(2, 9), at(2, 10)),)}
    for garbage in ("", "not json", '{"v": 99}'):
        assert (await provider.sync(account, garbage, WINDOW)).full


async def test_sync_state_of_another_calendar_is_ignored(
    provider: CalDavCalendar, dav_server: DavServer
) -> None:
    user = dav_server.new_user()
    one, two = dav_server.new_calendar(user), dav_server.new_calendar(user)
    state = (await provider.sync(one.account(), None, WINDOW)).state

    assert (await provider.sync(two.account(), state, WINDOW)).full


# --- failures -------------------------------------------------------------------------------


async def test_server_down_is_a_calendar_error(
    provider: CalDavCalendar, dav_calendar: DavCalendar
) -> None:
    account = dav_calendar.account()
    state = (await provider.sync(account, None, WINDOW)).state

    with dav_calendar.server.stopped():
        with pytest.raises(CalendarError) as failed:
            await provider.create_event(account, draft(at(2, 9), at(2, 10)))
        assert not isinstance(failed.value, CalendarAuthError)
        with pytest.raises(CalendarError):
            await provider.busy(account, at(1, 0), at(2, 0))
        with pytest.raises(CalendarError):
            await provider.sync(account, state, WINDOW)

    assert (await provider.sync(account, state, WINDOW)).changes == ()


async def test_changed_password_is_an_auth_error(
    provider: CalDavCalendar, radicale_auth: DavServer
) -> None:
    user = radicale_auth.new_user()
    calendar = radicale_auth.new_calendar(user)
    account = await provider.connect(unconnected(calendar.credentials()))
    await provider.create_event(account, draft(at(2, 9), at(2, 10)))

    assert user.username is not None
    radicale_auth.set_password(user.username, "a-new-password-7")

    for attempt in (
        provider.busy(account, at(1, 0), at(3, 0)),
        provider.create_event(account, draft(at(2, 9), at(2, 10))),
        provider.sync(account, None, WINDOW),
        provider.connect(replace(account, calendar_id="")),
    ):
        with pytest.raises(CalendarAuthError) as refused:
            await attempt
        assert str(user.password) not in str(refused.value)


async def test_timeout_is_bounded(provider: CalDavCalendar) -> None:
    """A server that accepts the connection and never answers: CalendarError after timeout."""
    import socket
    import time

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        slow = CalDavCalendar(timeout=0.5)
        started = time.monotonic()
        with pytest.raises(CalendarError):
            await slow.connect(unconnected({"url": url}))
        assert time.monotonic() - started < 5

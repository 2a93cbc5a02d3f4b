"""The CalDAV calendar provider: any RFC 4791 server (Fastmail, iCloud, Nextcloud, Radicale, …).

Credentials (``CalendarAccount.credentials``): ``url`` (the server's root, a principal URL or a
calendar collection URL), optional ``username`` and ``password``, optional ``calendar_url``.

The ``caldav`` library is synchronous, so every operation runs in a worker thread
(``asyncio.to_thread``) with a fresh ``DAVClient``; each HTTP request is bounded by the
provider's ``timeout``. An operation makes a handful of requests at most.

Rules this module follows (see ``docs/calendars.md``):

- **Events we write** have the UID ``evt_<ulid>@closerdesk`` (``OWN_UID_SUFFIX``) and live at
  ``<calendar collection>/<quoted UID>.ics``, so the event id returned by ``create_event`` is the
  UID and move/cancel need no search. The lead is an ``ATTENDEE`` with
  ``SCHEDULE-AGENT=CLIENT`` and the event has no ``ORGANIZER``: a server doing implicit
  scheduling (RFC 6638, section 7.1) must not send invitations of its own.
- **Busy time** comes from a calendar-query ``time-range`` REPORT (RFC 4791, section 7.8),
  widened by a day on each side because servers place floating times in their own zone; the
  objects are then expanded here with ``recurring-ical-events`` (RRULE, RDATE, EXDATE,
  overridden instances) and clipped to the asked interval. Transparent or cancelled
  occurrences and our own events are never busy. **Floating times and all-day dates are read
  as UTC**: an all-day event on 2027-03-04 is busy ``[2027-03-04T00:00Z, 2027-03-05T00:00Z)``.
- **Sync** prefers RFC 6578 ``sync-collection``; a server without it (no ``DAV:sync-token``
  property), or a provider built with ``sync_collection=False``, is compared by ctag
  (``CS:getctag``) and per-object ETags instead. See ``CalDavCalendar.sync`` for the state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

import icalendar
import recurring_ical_events
from caldav.collection import Principal
from caldav.davclient import DAVClient, DAVResponse
from caldav.lib import error as dav_error

from closerdesk.calendars.provider import (
    OWN_UID_SUFFIX,
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    CreatedEvent,
    EventDraft,
    MirrorChange,
    SyncBatch,
)
from closerdesk.kit.ids import new_id
from closerdesk.scheduling.intervals import Interval, merge

log = logging.getLogger(__name__)

T = TypeVar("T")

CALL_ID_PROPERTY = "X-CLOSERDESK-CALL-ID"
"""Every event we write carries the call's id; with the UID suffix it marks the event ours."""

_STATE_VERSION = 1
_SYNC_MAX_PAGES = 100
"""How many truncated sync-collection answers (RFC 6578, section 3.6) one sync follows."""
_FLOATING_SLACK = timedelta(days=1)
"""How far a server-side time-range query is widened: a floating time or an all-day date is
placed by the server in its own zone (up to ±14 h from UTC), and by us in UTC."""

_DAV = "DAV:"
_CALDAV = "urn:ietf:params:xml:ns:caldav"
_CS = "http://calendarserver.org/ns/"


def _tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


_HREF = _tag(_DAV, "href")
_RESPONSE = _tag(_DAV, "response")
_PROPSTAT = _tag(_DAV, "propstat")
_PROP = _tag(_DAV, "prop")
_STATUS = _tag(_DAV, "status")
_RESOURCETYPE = _tag(_DAV, "resourcetype")
_GETETAG = _tag(_DAV, "getetag")
_SYNC_TOKEN = _tag(_DAV, "sync-token")
_VALID_SYNC_TOKEN = _tag(_DAV, "valid-sync-token")
_ERROR = _tag(_DAV, "error")
_CALENDAR = _tag(_CALDAV, "calendar")
_CALENDAR_DATA = _tag(_CALDAV, "calendar-data")
_SUPPORTED_COMPONENTS = _tag(_CALDAV, "supported-calendar-component-set")
_COMP = _tag(_CALDAV, "comp")
_GETCTAG = _tag(_CS, "getctag")


# --- multistatus parsing ---------------------------------------------------------------------


@dataclass
class _Entry:
    """One ``DAV:response`` of a multistatus: its href, status, and the properties found."""

    href: str
    status: int | None
    props: dict[str, Any] = field(default_factory=dict)

    def text(self, tag: str) -> str | None:
        element = self.props.get(tag)
        if element is None or element.text is None:
            return None
        return str(element.text)


def _status_code(text: str | None) -> int | None:
    # "HTTP/1.1 404 Not Found" -> 404
    parts = (text or "").split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def _entries(response: Any) -> list[_Entry]:
    """The responses of a 207 multistatus, with the properties found (status 200) only."""
    tree = getattr(response, "tree", None)
    if tree is None:
        return []
    entries = []
    for element in tree.iter(_RESPONSE):
        href = element.findtext(_HREF)
        if not href:
            continue
        entry = _Entry(href=href.strip(), status=_status_code(element.findtext(_STATUS)))
        for propstat in element.findall(_PROPSTAT):
            if _status_code(propstat.findtext(_STATUS)) != 200:
                continue
            prop = propstat.find(_PROP)
            if prop is not None:
                for child in prop:
                    entry.props[child.tag] = child
        entries.append(entry)
    return entries


def _path(href: str) -> str:
    """The stable form of an href: its path, percent-decoded (servers differ on ``@``)."""
    return unquote(urlsplit(href).path)


def _same_resource(a: str, b: str) -> bool:
    return _path(a).rstrip("/") == _path(b).rstrip("/")


def _propfind_body(*props: tuple[str, str]) -> str:
    namespaces = {_DAV: "d", _CALDAV: "c", _CS: "cs"}
    inner = "".join(f"<{namespaces[ns]}:{name}/>" for ns, name in props)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<d:propfind xmlns:d="{_DAV}" xmlns:c="{_CALDAV}" xmlns:cs="{_CS}">'
        f"<d:prop>{inner}</d:prop></d:propfind>"
    )


def _check_status(response: Any, what: str) -> None:
    status = int(response.status)
    if status in (401, 403):
        raise CalendarAuthError(f"CalDAV server refused the credentials: {status} {what}")
    if status >= 400:
        raise CalendarError(f"CalDAV {what} failed: HTTP {status}")


def _preconditions(response: Any) -> set[str]:
    """The precondition tags of a ``DAV:error`` answer (RFC 4918, section 16), e.g.
    ``{DAV:}valid-sync-token``; empty for any other body."""
    tree = getattr(response, "tree", None)
    if tree is None or tree.tag != _ERROR:
        return set()
    return {child.tag for child in tree if isinstance(child.tag, str)}


class _ExpiredTokenError(Exception):
    """The server no longer knows the sync token (RFC 6578, section 3.2)."""


class _Client(DAVClient):
    """A ``DAVClient`` that keeps the last 401/403 answer (``refusal``).

    caldav 2.2.4 turns both into an ``AuthorizationError`` carrying only the reason phrase: no
    status, no body. But an expired sync token is a 403 with a ``DAV:valid-sync-token``
    precondition in its body (RFC 6578, section 3.2), which asks for a full resync and is no
    refusal. A ``requests`` response hook records the answer; ``request`` puts the hook on
    the session each time, as the library replaces its session while retrying a 401.
    """

    refusal: Any = None
    """The last ``requests.Response`` with status 401 or 403, ``None`` before one."""

    def _remember(self, response: Any, *args: Any, **kwargs: Any) -> None:
        if response.status_code in (401, 403):
            self.refusal = response

    def request(
        self,
        url: str,
        method: str = "GET",
        body: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> DAVResponse:
        hooks = self.session.hooks["response"]
        if self._remember not in hooks:
            hooks.append(self._remember)
        return super().request(url, method, body, headers or {})

    def refusal_preconditions(self) -> set[str]:
        """``_preconditions`` of the last 403 answer; empty for a 401 or an unreadable body."""
        if self.refusal is None or self.refusal.status_code != 403:
            return set()
        try:
            return _preconditions(DAVResponse(self.refusal, self))
        except Exception:
            return set()

    def refused(self, exc: dav_error.AuthorizationError) -> CalendarAuthError:
        """The ``CalendarAuthError`` for ``exc``, with the status when known."""
        status = getattr(self.refusal, "status_code", None)
        reason = " ".join(str(part) for part in (status, exc.reason) if part)
        return CalendarAuthError(f"CalDAV server refused the credentials: {reason or 'refused'}")


# --- the iCalendar side ----------------------------------------------------------------------


def _utc(value: date | datetime) -> datetime:
    """An occurrence bound as aware UTC: all-day dates and floating times are read as UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    return datetime.combine(value, time.min, tzinfo=UTC)


def _is_own(component: Any) -> bool:
    uid = str(component.get("UID", ""))
    return uid.endswith(OWN_UID_SUFFIX) or CALL_ID_PROPERTY in component


def _is_free(component: Any) -> bool:
    transp = str(component.get("TRANSP", "OPAQUE")).upper()
    status = str(component.get("STATUS", "")).upper()
    return transp == "TRANSPARENT" or status == "CANCELLED"


def busy_intervals(ics: str, start: datetime, end: datetime) -> list[Interval]:
    """Foreign busy time of one calendar object inside ``[start, end)``, merged.

    Recurring events are expanded (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides); our own
    events, transparent and cancelled occurrences give nothing. Raises ``ValueError`` for data
    that is not iCalendar.
    """
    calendar = icalendar.Calendar.from_ical(ics)
    events = calendar.walk("VEVENT")
    if not events or any(_is_own(event) for event in events):
        return []
    intervals = []
    # The expansion works on a day's slack: floating and all-day bounds are placed in UTC below.
    occurrences = recurring_ical_events.of(calendar, components=["VEVENT"]).between(
        start - _FLOATING_SLACK, end + _FLOATING_SLACK
    )
    for occurrence in occurrences:
        if _is_free(occurrence):
            continue
        occurrence_start = _utc(occurrence.start)
        occurrence_end = _utc(occurrence.end)
        clipped_start, clipped_end = max(occurrence_start, start), min(occurrence_end, end)
        if clipped_start < clipped_end:
            intervals.append(Interval(clipped_start, clipped_end))
    return merge(intervals)


def event_ics(uid: str, draft: EventDraft, stamp: datetime) -> str:
    """The VCALENDAR closerdesk puts on a calendar for a call (one VEVENT, times in UTC)."""
    calendar = icalendar.Calendar()
    calendar.add("PRODID", "-//closerdesk//calendar//EN")
    calendar.add("VERSION", "2.0")
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("DTSTAMP", stamp.astimezone(UTC))
    event.add("DTSTART", draft.starts_at.astimezone(UTC))
    event.add("DTEND", draft.ends_at.astimezone(UTC))
    event.add("SUMMARY", draft.title)
    if draft.location:
        event.add("LOCATION", draft.location)
    if draft.description:
        event.add("DESCRIPTION", draft.description)
    event.add("SEQUENCE", draft.sequence)
    event.add("STATUS", "CONFIRMED")
    event.add("TRANSP", "OPAQUE")
    event.add(CALL_ID_PROPERTY, draft.call_id)
    for email in draft.attendees:
        attendee = icalendar.vCalAddress(f"mailto:{email}")
        # RFC 6638, section 7.1: the client (closerdesk's partner) handles scheduling messages;
        # the server must not send an invitation of its own.
        attendee.params["SCHEDULE-AGENT"] = "CLIENT"
        attendee.params["ROLE"] = "REQ-PARTICIPANT"
        attendee.params["PARTSTAT"] = "NEEDS-ACTION"
        attendee.params["CUTYPE"] = "INDIVIDUAL"
        event.add("ATTENDEE", attendee, encode=False)
    calendar.add_component(event)
    return str(calendar.to_ical().decode("utf-8"))


# --- sync state ------------------------------------------------------------------------------


@dataclass
class _State:
    """The opaque ``SyncBatch.state``: JSON of this, ``v`` first.

    ``mode`` ``"sync"``: ``token`` is the RFC 6578 sync token. ``mode`` ``"etag"``: ``ctag`` is
    the collection's ``CS:getctag`` (``None`` when the server has none) and ``etags`` maps every
    object's path to its ETag. ``window`` is the interval the mirror covers (ISO pairs):
    an incremental batch also reports events with occurrences in the part of a new window that
    the old one did not cover. ``calendar`` is the collection the state belongs to.
    """

    mode: str
    calendar: str
    window: tuple[datetime, datetime]
    token: str | None = None
    ctag: str | None = None
    etags: dict[str, str] = field(default_factory=dict)

    def dump(self) -> str:
        data: dict[str, Any] = {
            "v": _STATE_VERSION,
            "mode": self.mode,
            "calendar": self.calendar,
            "window": [self.window[0].isoformat(), self.window[1].isoformat()],
        }
        if self.mode == "sync":
            data["token"] = self.token
        else:
            data["ctag"] = self.ctag
            data["etags"] = self.etags
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def load(cls, raw: str | None, calendar: str) -> _State | None:
        """The state, or ``None`` when absent, unreadable or for another calendar."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
            if data.get("v") != _STATE_VERSION or data.get("calendar") != calendar:
                return None
            state = cls(
                mode=str(data["mode"]),
                calendar=calendar,
                window=(
                    datetime.fromisoformat(data["window"][0]),
                    datetime.fromisoformat(data["window"][1]),
                ),
                token=data.get("token"),
                ctag=data.get("ctag"),
                etags={str(k): str(v) for k, v in (data.get("etags") or {}).items()},
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None
        if state.mode == "sync" and not state.token:
            return None
        if state.mode not in ("sync", "etag"):
            return None
        return state


def _uncovered(window: Interval, covered: tuple[datetime, datetime]) -> list[Interval]:
    """Parts of ``window`` outside ``covered``."""
    parts = []
    if window.start < covered[0]:
        parts.append(Interval(window.start, min(window.end, covered[0])))
    if window.end > covered[1]:
        parts.append(Interval(max(window.start, covered[1]), window.end))
    return parts


# --- the provider ----------------------------------------------------------------------------


class CalDavCalendar:
    """``CalendarProvider`` for CalDAV servers.

    ``timeout``: seconds for each HTTP request (connect and read). ``sync_collection``: use
    RFC 6578 ``sync-collection`` where the server has it (``False`` always compares
    ctag/ETags, which every server supports).
    """

    name = "caldav"

    def __init__(self, timeout: float = 10.0, *, sync_collection: bool = True) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.sync_collection = sync_collection

    # -- plumbing --

    async def _run(self, account: CalendarAccount, work: Callable[[_Client], T]) -> T:
        """Run ``work(client)`` in a worker thread; every failure becomes a ``CalendarError``."""
        credentials = account.credentials
        secret = credentials.get("password") or urlsplit(credentials.get("url", "")).password or ""

        def call() -> T:
            with self._client(credentials) as client:
                try:
                    return work(client)
                except dav_error.AuthorizationError as exc:
                    raise client.refused(exc) from None

        try:
            return await asyncio.to_thread(call)
        # ``from None``: a chained library exception could carry the request (and its
        # Authorization header) into a logged traceback.
        except CalendarError as exc:
            raise type(exc)(_redact(str(exc), secret)) from None
        except Exception as exc:
            # Network errors (refused, timeout), 5xx, unparsable answers: all one failure kind.
            raise CalendarError(
                _redact(f"CalDAV request failed: {type(exc).__name__}: {exc}", secret)
            ) from None

    def _client(self, credentials: Mapping[str, str]) -> _Client:
        url = credentials.get("url")
        if not url:
            raise CalendarError("CalDAV credentials need a url")
        username = credentials.get("username") or None
        password = credentials.get("password")
        if username is not None and password is None:
            # Lets the library answer a Basic challenge (a server that accepts any password).
            password = ""
        return _Client(
            url=url,
            username=username,
            password=password,
            timeout=self.timeout,  # type: ignore[arg-type]  # requests takes a float
            enable_rfc6764=False,
        )

    @staticmethod
    def _calendar_url(account: CalendarAccount) -> str:
        if not account.calendar_id:
            raise CalendarError("CalDAV account has no calendar; connect it first")
        return (
            account.calendar_id if account.calendar_id.endswith("/") else account.calendar_id + "/"
        )

    @staticmethod
    def _event_url(calendar_url: str, event_id: str) -> str:
        return urljoin(calendar_url, quote(event_id, safe="") + ".ics")

    # -- connect --

    async def connect(self, account: CalendarAccount) -> CalendarAccount:
        """Check the credentials and find the calendar; returns the account with
        ``calendar_id`` = the absolute collection URL (ending in ``/``).

        ``calendar_url`` when given, else ``url`` when it is a calendar, else the first calendar
        of the principal (found from ``url``) whose supported components include VEVENT.
        Raises ``CalendarAuthError`` (401/403, with the server's reason) or ``CalendarError``.
        """
        credentials = account.credentials

        def work(client: _Client) -> str:
            explicit = credentials.get("calendar_url")
            if explicit:
                found = self._calendar_at(client, urljoin(str(client.url), explicit))
                if found is None:
                    raise CalendarError("calendar_url is not a calendar that accepts events")
                return found
            found = self._calendar_at(client, str(client.url))
            if found is not None:
                return found
            # ``Principal(client=...)`` is what ``client.principal()`` builds (that one is untyped).
            for calendar in Principal(client=client).calendars():
                url = str(calendar.url)
                if self._calendar_at(client, url) is not None:
                    return url if url.endswith("/") else url + "/"
            raise CalendarError("no calendar accepting events (VEVENT) found for this account")

        calendar_id = await self._run(account, work)
        return replace(account, calendar_id=calendar_id)

    def _calendar_at(self, client: _Client, url: str) -> str | None:
        """``url`` (absolute, with ``/``) if it is a calendar collection accepting VEVENT."""
        body = _propfind_body(
            ("DAV:", "resourcetype"), (_CALDAV, "supported-calendar-component-set")
        )
        response = client.propfind(url, body, depth=0)
        if int(response.status) == 404:
            return None
        _check_status(response, "PROPFIND")
        for entry in _entries(response):
            if not _same_resource(entry.href, url):
                continue
            resourcetype = entry.props.get(_RESOURCETYPE)
            if resourcetype is None or resourcetype.find(_CALENDAR) is None:
                return None
            components = entry.props.get(_SUPPORTED_COMPONENTS)
            # RFC 4791, section 5.2.3: without the property, every component type is accepted.
            if components is not None:
                names = {str(comp.get("name", "")).upper() for comp in components.iter(_COMP)}
                if "VEVENT" not in names:
                    return None
            return url if url.endswith("/") else url + "/"
        return None

    # -- events --

    async def create_event(self, account: CalendarAccount, draft: EventDraft) -> CreatedEvent:
        """PUT a new VEVENT (``If-None-Match: *``); its id is its UID, ``evt_<ulid>@closerdesk``."""
        calendar_url = self._calendar_url(account)
        uid = new_id("evt") + OWN_UID_SUFFIX

        def work(client: _Client) -> None:
            body = event_ics(uid, draft, datetime.now(UTC))
            response = client.put(
                self._event_url(calendar_url, uid),
                body,
                {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"},
            )
            _check_status(response, "PUT")

        await self._run(account, work)
        return CreatedEvent(uid)

    async def move_event(self, account: CalendarAccount, event_id: str, draft: EventDraft) -> None:
        """Overwrite the event at its URL: same UID, the draft's times and ``SEQUENCE``.

        An event the closer deleted by hand is put back (the call still takes place).
        """
        calendar_url = self._calendar_url(account)

        def work(client: _Client) -> None:
            body = event_ics(event_id, draft, datetime.now(UTC))
            response = client.put(
                self._event_url(calendar_url, event_id),
                body,
                {"Content-Type": "text/calendar; charset=utf-8"},
            )
            _check_status(response, "PUT")

        await self._run(account, work)

    async def cancel_event(self, account: CalendarAccount, event_id: str) -> None:
        """DELETE the event; one already gone (404, 410) is not an error."""
        calendar_url = self._calendar_url(account)

        def work(client: _Client) -> None:
            response = client.delete(self._event_url(calendar_url, event_id))
            if int(response.status) in (404, 410):
                return
            _check_status(response, "DELETE")

        await self._run(account, work)

    # -- busy --

    async def busy(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[Interval]:
        """Live foreign busy time in ``[start, end)``, merged and sorted (see the module doc)."""
        calendar_url = self._calendar_url(account)
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if not start < end:
            return []

        def work(client: _Client) -> list[Interval]:
            objects = self._time_range(client, calendar_url, start, end)
            intervals: list[Interval] = []
            for _etag, ics in objects.values():
                intervals.extend(_safe_busy(ics, start, end))
            return merge(intervals)

        return await self._run(account, work)

    def _time_range(
        self, client: _Client, calendar_url: str, start: datetime, end: datetime
    ) -> dict[str, tuple[str | None, str]]:
        """``path -> (etag, calendar data)`` of the VEVENT objects the server places in
        ``[start, end)`` widened by ``_FLOATING_SLACK`` (RFC 4791, section 9.9)."""

        def stamp(value: datetime) -> str:
            return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<c:calendar-query xmlns:d="{_DAV}" xmlns:c="{_CALDAV}">'
            "<d:prop><d:getetag/><c:calendar-data/></d:prop>"
            '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
            f'<c:time-range start="{stamp(start - _FLOATING_SLACK)}"'
            f' end="{stamp(end + _FLOATING_SLACK)}"/>'
            "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
        )
        response = client.report(calendar_url, body, depth=1)
        _check_status(response, "calendar-query REPORT")
        return _objects(_entries(response))

    def _multiget(
        self, client: _Client, calendar_url: str, paths: Iterable[str]
    ) -> dict[str, tuple[str | None, str]]:
        """``path -> (etag, calendar data)`` for the given object paths (RFC 4791, 7.9); paths
        the server no longer has are missing from the answer."""
        wanted = sorted(set(paths))
        found: dict[str, tuple[str | None, str]] = {}
        for chunk_start in range(0, len(wanted), 200):
            chunk = wanted[chunk_start : chunk_start + 200]
            hrefs = "".join(f"<d:href>{escape(quote(path))}</d:href>" for path in chunk)
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                f'<c:calendar-multiget xmlns:d="{_DAV}" xmlns:c="{_CALDAV}">'
                f"<d:prop><d:getetag/><c:calendar-data/></d:prop>{hrefs}</c:calendar-multiget>"
            )
            response = client.report(calendar_url, body, depth=1)
            _check_status(response, "calendar-multiget REPORT")
            found.update(_objects(_entries(response)))
        return found

    # -- sync --

    async def sync(
        self, account: CalendarAccount, state: str | None, window: Interval
    ) -> SyncBatch:
        """Foreign events changed since ``state``, busy time clipped to ``window``.

        ``state`` ``None``, unreadable, for another calendar, or an expired sync token → a full
        batch (``full=True``): every object with busy time in the window. Otherwise an
        incremental batch: every object added or changed (its whole busy time in the window,
        possibly empty), every object removed (empty), and every object with occurrences in a
        part of ``window`` the previous window did not cover. Keys are object paths.
        The returned state is JSON (see ``_State``): ``{"v":1,"mode":"sync","token":…}`` or
        ``{"v":1,"mode":"etag","ctag":…,"etags":{path: etag}}``, plus ``calendar`` and
        ``window``.
        """
        calendar_url = self._calendar_url(account)
        window = Interval(window.start.astimezone(UTC), window.end.astimezone(UTC))
        previous = _State.load(state, calendar_url)
        if previous is not None and previous.mode == "sync" and not self.sync_collection:
            previous = None

        def work(client: _Client) -> SyncBatch:
            if previous is None:
                return self._full(client, calendar_url, window)
            if previous.mode == "sync":
                return self._incremental_sync(client, calendar_url, window, previous)
            return self._incremental_etag(client, calendar_url, window, previous)

        return await self._run(account, work)

    def _full(self, client: _Client, calendar_url: str, window: Interval) -> SyncBatch:
        # The token (or the ETag listing) is read before the data, so a change made in between
        # is reported again next time rather than lost.
        token = self._sync_token(client, calendar_url) if self.sync_collection else None
        if token is not None:
            new_state = _State("sync", calendar_url, (window.start, window.end), token=token)
            objects = self._time_range(client, calendar_url, window.start, window.end)
        else:
            ctag, etags = self._etags(client, calendar_url)
            objects = self._time_range(client, calendar_url, window.start, window.end)
            for path, (etag, _ics) in objects.items():
                if etag is not None and path in etags:
                    etags[path] = etag
            new_state = _State(
                "etag", calendar_url, (window.start, window.end), ctag=ctag, etags=etags
            )
        changes = []
        for path, (_etag, ics) in sorted(objects.items()):
            intervals = _safe_busy(ics, window.start, window.end)
            if intervals:
                changes.append(MirrorChange(path, tuple(intervals)))
        return SyncBatch(state=new_state.dump(), full=True, changes=tuple(changes))

    def _incremental_sync(
        self, client: _Client, calendar_url: str, window: Interval, previous: _State
    ) -> SyncBatch:
        if not previous.token:  # never: _State.load refuses a "sync" state without one
            return self._full(client, calendar_url, window)
        try:
            token, changed, deleted = self._sync_collection(client, calendar_url, previous.token)
        except _ExpiredTokenError:
            # RFC 6578, section 3.2: the token expired; start again from a full batch.
            return self._full(client, calendar_url, window)
        new_state = _State("sync", calendar_url, (window.start, window.end), token=token)
        return self._changes(client, calendar_url, window, previous, changed, deleted, new_state)

    def _sync_collection(
        self, client: _Client, calendar_url: str, token: str
    ) -> tuple[str, set[str], set[str]]:
        """RFC 6578 ``sync-collection`` REPORT from ``token``: the new token, and the paths of
        the objects changed and of those removed since ``token``.

        A truncated answer (a 507 for the collection, section 3.6) is followed up with the
        token it gives, up to ``_SYNC_MAX_PAGES`` answers. Raises ``_ExpiredTokenError`` for
        an answer with the ``DAV:valid-sync-token`` precondition (a 403 on Radicale, a 412 on
        Xandikos), whatever its status.
        """
        calendar_path = _path(calendar_url).rstrip("/")
        changed: set[str] = set()
        deleted: set[str] = set()
        for _page in range(_SYNC_MAX_PAGES):
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                f'<d:sync-collection xmlns:d="{_DAV}">'
                f"<d:sync-token>{escape(token)}</d:sync-token><d:sync-level>1</d:sync-level>"
                "<d:prop><d:getetag/></d:prop></d:sync-collection>"
            )
            client.refusal = None
            try:
                # Section 3.3: the report is only defined for Depth 0 (sync-level gives the scope).
                response = client.report(calendar_url, body, depth=0)
            except dav_error.AuthorizationError:
                if _VALID_SYNC_TOKEN in client.refusal_preconditions():
                    raise _ExpiredTokenError from None
                raise
            if int(response.status) >= 400 and _VALID_SYNC_TOKEN in _preconditions(response):
                raise _ExpiredTokenError
            _check_status(response, "sync-collection REPORT")
            truncated = False
            for entry in _entries(response):
                path = _path(entry.href)
                if path.rstrip("/") == calendar_path:
                    if entry.status == 507:
                        truncated = True
                    continue
                if entry.status == 507:
                    raise CalendarError(f"CalDAV sync-collection REPORT: 507 for {entry.href}")
                if path.endswith("/"):
                    continue  # a sub-collection, not a calendar object
                # A removed member has a 404 status and no ETag (section 3.2); one with an
                # ETag is listed as changed too (Cyrus), and the multiget settles it.
                if entry.status == 404 and _GETETAG not in entry.props:
                    changed.discard(path)
                    deleted.add(path)
                else:
                    deleted.discard(path)
                    changed.add(path)
            tree = response.tree
            new_token = (tree.findtext(_SYNC_TOKEN) or "").strip() if tree is not None else ""
            if not new_token:
                raise CalendarError("CalDAV sync-collection REPORT gave no sync token")
            again = truncated and new_token != token
            token = new_token
            if not again:
                if truncated:
                    log.warning("sync-collection truncated without a new token; result incomplete")
                break
        else:
            log.warning("sync-collection still truncated after %d answers", _SYNC_MAX_PAGES)
        return token, changed, deleted

    def _incremental_etag(
        self, client: _Client, calendar_url: str, window: Interval, previous: _State
    ) -> SyncBatch:
        ctag = self._ctag(client, calendar_url)
        if ctag is not None and ctag == previous.ctag:
            etags = dict(previous.etags)
            changed: set[str] = set()
            deleted: set[str] = set()
        else:
            ctag, etags = self._etags(client, calendar_url)
            changed = {path for path, etag in etags.items() if previous.etags.get(path) != etag}
            deleted = set(previous.etags) - set(etags)
        new_state = _State("etag", calendar_url, (window.start, window.end), ctag=ctag, etags=etags)
        return self._changes(client, calendar_url, window, previous, changed, deleted, new_state)

    def _changes(
        self,
        client: _Client,
        calendar_url: str,
        window: Interval,
        previous: _State,
        changed: set[str],
        deleted: set[str],
        new_state: _State,
    ) -> SyncBatch:
        """The incremental batch: changed objects fetched and expanded, deleted ones empty,
        plus the objects with occurrences in the newly covered part of the window."""
        objects: dict[str, tuple[str | None, str]] = {}
        for part in _uncovered(window, previous.window):
            objects.update(self._time_range(client, calendar_url, part.start, part.end))
        missing = changed - set(objects)
        if missing:
            fetched = self._multiget(client, calendar_url, missing)
            objects.update(fetched)
            # Listed as changed but gone by the time we asked: removed.
            deleted |= missing - set(fetched)
        if new_state.mode == "etag":
            for path, (etag, _ics) in objects.items():
                if etag is not None and path in new_state.etags:
                    new_state.etags[path] = etag
            for path in deleted:
                new_state.etags.pop(path, None)
        changes = [
            MirrorChange(path, tuple(_safe_busy(ics, window.start, window.end)))
            for path, (_etag, ics) in sorted(objects.items())
            if path not in deleted
        ]
        changes.extend(MirrorChange(path) for path in sorted(deleted))
        return SyncBatch(state=new_state.dump(), full=False, changes=tuple(changes))

    def _sync_token(self, client: _Client, calendar_url: str) -> str | None:
        """The collection's ``DAV:sync-token`` (RFC 6578, section 4), ``None`` without one."""
        response = client.propfind(calendar_url, _propfind_body(("DAV:", "sync-token")), depth=0)
        _check_status(response, "PROPFIND")
        for entry in _entries(response):
            if _same_resource(entry.href, calendar_url):
                return entry.text(_SYNC_TOKEN)
        return None

    def _ctag(self, client: _Client, calendar_url: str) -> str | None:
        response = client.propfind(calendar_url, _propfind_body((_CS, "getctag")), depth=0)
        _check_status(response, "PROPFIND")
        for entry in _entries(response):
            if _same_resource(entry.href, calendar_url):
                return entry.text(_GETCTAG)
        return None

    def _etags(self, client: _Client, calendar_url: str) -> tuple[str | None, dict[str, str]]:
        """The collection's ctag and ``path -> ETag`` of its calendar objects (one PROPFIND)."""
        body = _propfind_body(("DAV:", "getetag"), (_CS, "getctag"), ("DAV:", "resourcetype"))
        response = client.propfind(calendar_url, body, depth=1)
        _check_status(response, "PROPFIND")
        ctag = None
        etags = {}
        for entry in _entries(response):
            if _same_resource(entry.href, calendar_url):
                ctag = entry.text(_GETCTAG)
                continue
            resourcetype = entry.props.get(_RESOURCETYPE)
            if resourcetype is not None and len(resourcetype):
                continue  # a sub-collection, not a calendar object
            etag = entry.text(_GETETAG)
            if etag is not None:
                etags[_path(entry.href)] = etag
        return ctag, etags


def _objects(entries: Iterable[_Entry]) -> dict[str, tuple[str | None, str]]:
    found = {}
    for entry in entries:
        data = entry.text(_CALENDAR_DATA)
        if data is not None:
            found[_path(entry.href)] = (entry.text(_GETETAG), data)
    return found


def _safe_busy(ics: str, start: datetime, end: datetime) -> list[Interval]:
    """``busy_intervals``, an object we cannot read counting as not busy (and logged)."""
    try:
        return busy_intervals(ics, start, end)
    except Exception:
        log.warning("unreadable calendar object skipped", exc_info=True)
        return []


def _redact(message: str, secret: str) -> str:
    return message.replace(secret, "***") if secret else message

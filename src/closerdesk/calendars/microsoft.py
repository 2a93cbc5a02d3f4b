"""The Microsoft Graph v1.0 calendar provider: Microsoft 365 and Outlook.com calendars.

Credentials (``CalendarAccount.credentials``): ``refresh_token`` (OAuth 2.0, Microsoft identity
platform; Microsoft rotates it and ``TokenSource`` hands the new one to its ``on_rotate`` hook),
optional ``conferencing`` (``"teams"``). ``connect`` adds ``mailbox`` (the user's SMTP address,
from ``GET /me``) and ``default_calendar`` (``"true"``/``"false"``). ``calendar_id`` is the
Graph calendar id; empty means the mailbox's default calendar.

Every request goes through ``ProviderHttp`` (bounded, retried on 429/5xx honouring
``Retry-After``, one token refresh on a 401). Every request also says
``Prefer: outlook.timezone="UTC", IdType="ImmutableId"``: times come back in UTC, and event ids
do not change when Exchange moves an item between folders (Graph: "Obtain immutable
identifiers for Outlook resources"). Both preferences share one header, comma-separated, as
RFC 7240, section 2 allows.

Rules this module follows (public sources in brackets):

- **No email ever**: Graph sends an invitation to the attendees of any event created or
  updated with attendees, and has no flag to stop it [Graph v1.0: "Create event", "Update
  event"]. So closerdesk's events have **no attendees**; the lead's address is written in the
  body text instead (``With: …``). Deleting an event with no attendees sends no cancellation.
- **Ours, and created once**: every event is created with a ``transactionId``
  ``closerdesk-<call id>-<random>`` [Graph v1.0: event resource, ``transactionId``: "a custom
  identifier specified by a client app for the server to avoid redundant POST operations in
  case of client retries"]. A POST repeated with the same ``transactionId`` answers the event
  already made, so the create is retried after a timeout (``idempotent=True``) without making
  two events. Graph returns ``transactionId`` with the event (in ``calendarView`` and delta
  answers too), so ``TRANSACTION_PREFIX`` marks the event as closerdesk's: never foreign busy
  time.
- **Teams**: with ``conferencing`` set, the event is created with ``isOnlineMeeting: true`` and
  ``onlineMeetingProvider: "teamsForBusiness"``; ``CreatedEvent.room_url`` is
  ``onlineMeeting.joinUrl`` [Graph v1.0: event resource, ``onlineMeeting``].
- **Live busy time** (``busy``): ``POST /me/calendar/getSchedule`` [Graph v1.0:
  "calendar: getSchedule"] for the mailbox; when it reports nothing but ``free`` items, the
  interval is free. Otherwise (or when getSchedule cannot answer for this mailbox: personal
  Microsoft accounts do not support it) ``GET /me/calendars/{id}/calendarView`` [Graph v1.0:
  "List calendarView"] lists the occurrences, and those that are ours, ``showAs: free`` or
  ``isCancelled`` are dropped. Free/busy covers only the default calendar, so a connection to
  another calendar always asks ``calendarView``.
- **Sync** is a delta query on the calendar view of the mirror's window [Graph v1.0: "event:
  delta"; "Get incremental changes to events in a calendar view"]: ``GET
  /me/calendars/{id}/calendarView/delta?startDateTime=…&endDateTime=…``, following
  ``@odata.nextLink`` until ``@odata.deltaLink``. The state is the ``@odata.deltaLink`` URL
  (the window is encoded in it); the next sync GETs it. A ``410 Gone``, or an error whose code
  is ``syncStateNotFound`` or ``resyncRequired`` [Graph: "Use delta query", synchronization
  reset and token duration; "Microsoft Graph error responses"], starts a full sync instead.
  Removed events (``@removed``) and events outside the window come as ``MirrorChange(key)``
  with no intervals; recurring events come as their occurrences, each with its own id.
- **Push** [Graph v1.0: "Create subscription"; "Receive change notifications through
  webhooks"; "Reduce missing subscriptions and change notifications" (lifecycle)]: ``watch``
  subscribes ``/me/events`` (the documented Outlook event resource; a notification about
  another calendar of the mailbox only costs a sync) for ``created,updated,deleted`` with
  ``clientState`` = closerdesk's token, for ``SUBSCRIPTION_DAYS`` days (Outlook events allow
  at most 10,080 minutes). Graph first POSTs ``?validationToken=…`` to the address, which must
  echo it as ``text/plain``. ``parse_notifications`` reads what Graph then posts.

Links closerdesk follows (``@odata.nextLink``, ``@odata.deltaLink``, a stored state) must start
with ``CLOSERDESK_MICROSOFT_API_URI``: the bearer token is never sent anywhere else.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from closerdesk.calendars.http import ProviderHttp, RetryPolicy, TokenGetter, provider_reason
from closerdesk.calendars.oauth import TokenSource
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarError,
    CreatedEvent,
    EventDraft,
    MirrorChange,
    PushChannel,
    SyncBatch,
)
from closerdesk.config import Settings
from closerdesk.scheduling.intervals import Interval, merge

log = logging.getLogger(__name__)

TRANSACTION_PREFIX = "closerdesk-"
"""Every event closerdesk creates has a ``transactionId`` starting with this: ours."""
PREFER = 'outlook.timezone="UTC", IdType="ImmutableId"'
"""The ``Prefer`` header of every request: UTC times, immutable ids."""
SUBSCRIPTION_DAYS = 3
"""How long a push subscription lasts (days); Graph allows at most 10,080 minutes (7 days)
for Outlook events, and the lead renews before it lapses."""
SCHEDULE_INTERVAL_MINUTES = 15
"""getSchedule's ``availabilityViewInterval`` (minutes, 5 to 1,440); only the view uses it."""
PAGE_SIZE = 100
"""Events asked per page (``$top`` for calendarView, ``odata.maxpagesize`` for delta)."""
MAX_PAGES = 200
"""Pages one operation follows at most; a longer answer fails instead of looping."""
RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired"})
"""Graph error codes that ask for a full synchronization (with any 4xx, besides 410)."""
NOT_BUSY_STATUSES = frozenset({"free"})
"""``showAs`` / getSchedule ``status`` values that are not busy time; every other one
(``busy``, ``tentative``, ``oof``, ``workingElsewhere``, ``unknown``) is."""
_SELECT = "id,start,end,showAs,isCancelled,transactionId,isAllDay,type"
_UTC_NAMES = frozenset({"utc", "etc/utc", "coordinated universal time", "tzone://microsoft/utc"})


# --- wire helpers ---------------------------------------------------------------------------


def graph_time(value: Any) -> datetime:
    """A Graph ``dateTimeTimeZone`` (``{"dateTime": "2027-03-04T10:00:00.0000000",
    "timeZone": "UTC"}``) as an aware UTC datetime. closerdesk asks for UTC
    (``Prefer: outlook.timezone``); an IANA zone name is converted too, any other zone name
    (a Windows one) is read as UTC, as all-day dates are. Raises ``ValueError`` on anything
    else."""
    if not isinstance(value, Mapping) or not isinstance(value.get("dateTime"), str):
        raise ValueError(f"not a dateTimeTimeZone: {value!r}")
    text = value["dateTime"].strip().removesuffix("Z")
    head, dot, fraction = text.partition(".")
    when = datetime.fromisoformat(head + (dot + fraction[:6] if dot else ""))
    if when.tzinfo is not None:
        return when.astimezone(UTC)
    zone = str(value.get("timeZone") or "UTC")
    if zone.lower() in _UTC_NAMES:
        return when.replace(tzinfo=UTC)
    try:
        return when.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("Graph time zone %r read as UTC", zone)
        return when.replace(tzinfo=UTC)


def graph_stamp(when: datetime) -> dict[str, str]:
    """An aware datetime as a Graph ``dateTimeTimeZone`` in UTC (whole seconds)."""
    return {"dateTime": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _iso(when: datetime) -> str:
    """ISO 8601 in UTC with ``Z``, for query parameters and ``expirationDateTime``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_own(event: Mapping[str, Any]) -> bool:
    """True for an event closerdesk created (its ``transactionId`` has our prefix)."""
    transaction = event.get("transactionId")
    return isinstance(transaction, str) and transaction.startswith(TRANSACTION_PREFIX)


def event_busy(event: Mapping[str, Any], start: datetime, end: datetime) -> tuple[Interval, ...]:
    """The foreign busy time of one Graph event (an occurrence or single instance) inside
    ``[start, end)``: nothing for a removed (``@removed``), cancelled, ``showAs: free``,
    series-master or closerdesk event. Raises ``ValueError`` on unreadable times."""
    if "@removed" in event or is_own(event) or event.get("isCancelled"):
        return ()
    if str(event.get("showAs") or "busy") in NOT_BUSY_STATUSES:
        return ()
    if event.get("type") == "seriesMaster":  # its occurrences come on their own
        return ()
    clipped_start = max(graph_time(event.get("start")), start)
    clipped_end = min(graph_time(event.get("end")), end)
    if clipped_start >= clipped_end:
        return ()
    return (Interval(clipped_start, clipped_end),)


def _safe_busy(event: Mapping[str, Any], start: datetime, end: datetime) -> tuple[Interval, ...]:
    """``event_busy``, an event with unreadable times counting as not busy (and logged)."""
    try:
        return event_busy(event, start, end)
    except (ValueError, TypeError):
        log.warning("unreadable Graph event %r skipped", event.get("id"))
        return ()


def _error_code(response: httpx.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return str(error.get("code")) if isinstance(error, dict) and error.get("code") else None


# --- notifications --------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphNotification:
    """One item of a Graph ``changeNotificationCollection`` [Graph v1.0: changeNotification].

    A change notification has ``change_type`` (``created``, ``updated``, ``deleted``),
    ``resource`` (``Users/{id}/Events/{id}``) and ``event_id`` (``resourceData.id``); a
    lifecycle notification has ``lifecycle_event`` (``reauthorizationRequired``,
    ``subscriptionRemoved``, ``missed``) instead. ``client_state`` is the ``clientState`` given
    to ``watch`` (compare it with ``client_state_matches``).
    """

    subscription_id: str
    client_state: str | None
    change_type: str | None
    lifecycle_event: str | None
    resource: str | None
    event_id: str | None = None
    tenant_id: str | None = None
    expires_at: datetime | None = None


def _optional_str(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def _parse_expiry(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_notifications(body: bytes) -> list[GraphNotification]:
    """The notifications of a POST from Graph to ``/hooks/microsoft``: a JSON object
    ``{"value": [{"subscriptionId", "clientState", "changeType" | "lifecycleEvent",
    "resource", "resourceData": {"id"}, "tenantId", "subscriptionExpirationDateTime"}]}``.

    Raises ``ValueError`` when the body is not such a collection (not JSON, no ``value``
    list, an item without ``subscriptionId`` or with neither ``changeType`` nor
    ``lifecycleEvent``). Does not check ``clientState``: see ``client_state_matches``.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a JSON body") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("value"), list):
        raise ValueError("not a Graph notification collection: no 'value' list")
    notifications = []
    for item in payload["value"]:
        if not isinstance(item, dict):
            raise ValueError("a notification is not an object")
        subscription_id = item.get("subscriptionId")
        if not isinstance(subscription_id, str) or not subscription_id:
            raise ValueError("a notification has no subscriptionId")
        change_type = _optional_str(item, "changeType")
        lifecycle_event = _optional_str(item, "lifecycleEvent")
        if change_type is None and lifecycle_event is None:
            raise ValueError("a notification has neither changeType nor lifecycleEvent")
        data = item.get("resourceData")
        event_id = data.get("id") if isinstance(data, dict) else None
        notifications.append(
            GraphNotification(
                subscription_id=subscription_id,
                client_state=_optional_str(item, "clientState"),
                change_type=change_type,
                lifecycle_event=lifecycle_event,
                resource=_optional_str(item, "resource"),
                event_id=event_id if isinstance(event_id, str) else None,
                tenant_id=_optional_str(item, "tenantId"),
                expires_at=_parse_expiry(_optional_str(item, "subscriptionExpirationDateTime")),
            )
        )
    return notifications


def client_state_matches(notification: GraphNotification, token: str) -> bool:
    """Whether the notification carries ``token`` as ``clientState`` (constant time): Graph
    says to drop a notification whose ``clientState`` differs from the subscription's."""
    if notification.client_state is None or not token:
        return False
    return hmac.compare_digest(notification.client_state.encode(), token.encode())


# --- the provider ---------------------------------------------------------------------------


class _ResyncRequired(Exception):
    """Graph no longer knows the delta token: start a full sync."""


class MicrosoftCalendar:
    """``CalendarProvider`` and ``PushProvider`` for Microsoft Graph v1.0.

    ``settings`` give the API base (``microsoft_api_uri``), the OAuth client, the bound on each
    request (``calendar_timeout_seconds``) and the retry budget (``calendar_retry_seconds``).
    ``tokens`` defaults to a ``TokenSource`` of the ``microsoft`` OAuth app (closed with the
    provider); ``transport`` lets a test route the API requests elsewhere.
    """

    name = "microsoft"

    def __init__(
        self,
        settings: Settings,
        *,
        tokens: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api = settings.microsoft_api_uri.rstrip("/")
        self._http = ProviderHttp(
            "Microsoft Graph",
            timeout=settings.calendar_timeout_seconds,
            policy=RetryPolicy(budget=settings.calendar_retry_seconds),
            transport=transport,
        )
        self._tokens = tokens or TokenSource.for_provider(settings, "microsoft")

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._tokens.aclose()

    # -- plumbing --

    def _token(self, account: CalendarAccount) -> TokenGetter:
        return self._tokens.getter(account)

    def _ours(self, url: str) -> bool:
        """A link Graph gave (or a stored state) that stays on the configured API."""
        return url.startswith(self._api + "/")

    def _calendar_path(self, account: CalendarAccount) -> str:
        if not account.calendar_id:
            raise CalendarError("Microsoft Graph: the connection has no calendar; connect again")
        return f"/me/calendars/{quote(account.calendar_id, safe='')}"

    @staticmethod
    def _event_path(event_id: str) -> str:
        return f"/me/events/{quote(event_id, safe='')}"

    async def _call(
        self,
        method: str,
        path_or_url: str,
        token: TokenGetter,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        prefer: str = PREFER,
        idempotent: bool | None = None,
        accept: tuple[int, ...] = (),
    ) -> httpx.Response:
        url = path_or_url if path_or_url.startswith("http") else self._api + path_or_url
        return await self._http.request(
            method,
            url,
            token=token,
            params=params,
            json=json,
            headers={"Prefer": prefer, "Accept": "application/json"},
            idempotent=idempotent,
            accept=accept,
        )

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise CalendarError("Microsoft Graph sent an unreadable answer") from None
        if not isinstance(body, dict):
            raise CalendarError("Microsoft Graph sent an unexpected answer")
        return body

    async def _pages(
        self, token: TokenGetter, path: str, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink``."""
        items: list[dict[str, Any]] = []
        url: str | None = path
        query: Mapping[str, Any] | None = params
        for _ in range(MAX_PAGES):
            if url is None:
                return items
            body = self._json(await self._call("GET", url, token, params=query))
            items.extend(item for item in body.get("value") or [] if isinstance(item, dict))
            url, query = self._next(body.get("@odata.nextLink")), None
        raise CalendarError(f"Microsoft Graph: more than {MAX_PAGES} pages")

    def _next(self, link: Any) -> str | None:
        if link is None:
            return None
        if not isinstance(link, str) or not self._ours(link):
            raise CalendarError("Microsoft Graph sent a link outside its API; not followed")
        return link

    # -- connect --

    async def connect(self, account: CalendarAccount) -> CalendarAccount:
        """Check the refresh token and find the calendar [Graph v1.0: "Get user", "Get
        calendar"]: ``GET /me`` (the mailbox address, ``mail`` or else
        ``userPrincipalName``), then ``GET /me/calendar`` (no ``calendar_id``) or
        ``GET /me/calendars/{id}``. Returns the account with ``calendar_id`` = the calendar's
        id and ``mailbox``/``default_calendar`` added to its credentials.

        Raises ``CalendarAuthError`` (a refused or revoked grant, 401/403) or
        ``CalendarError`` (no such calendar, a read-only one, Graph unreachable).
        """
        token = self._token(account)
        me = self._json(
            await self._call("GET", "/me", token, params={"$select": "mail,userPrincipalName"})
        )
        mailbox = me.get("mail") or me.get("userPrincipalName")
        path = (
            f"/me/calendars/{quote(account.calendar_id, safe='')}"
            if account.calendar_id
            else "/me/calendar"
        )
        response = await self._call("GET", path, token, accept=(404,))
        if response.status_code == 404:
            raise CalendarError(
                f"Microsoft Graph: no calendar {account.calendar_id!r} in this mailbox "
                f"({provider_reason(response)})"
            )
        calendar = self._json(response)
        if not isinstance(calendar.get("id"), str):
            raise CalendarError("Microsoft Graph sent a calendar without an id")
        if calendar.get("canEdit") is False:
            raise CalendarError("Microsoft Graph: the calendar is read-only for this account")
        default = bool(calendar.get("isDefaultCalendar")) or not account.calendar_id
        credentials = dict(account.credentials)
        credentials["default_calendar"] = "true" if default else "false"
        if isinstance(mailbox, str) and mailbox:
            credentials["mailbox"] = mailbox
        return replace(account, calendar_id=calendar["id"], credentials=credentials)

    # -- events --

    @staticmethod
    def _content(draft: EventDraft) -> dict[str, Any]:
        """What create and move write: subject, UTC times, location, a text body.

        The lead is named in the body, never as an attendee: Graph would email them.
        """
        text = [draft.description] if draft.description else []
        if draft.attendees:
            text.append("With: " + ", ".join(draft.attendees))
        return {
            "subject": draft.title,
            "body": {"contentType": "text", "content": "\n\n".join(text)},
            "start": graph_stamp(draft.starts_at),
            "end": graph_stamp(draft.ends_at),
            "location": {"displayName": draft.location},
            "showAs": "busy",
        }

    async def create_event(self, account: CalendarAccount, draft: EventDraft) -> CreatedEvent:
        """``POST /me/calendars/{id}/events`` [Graph v1.0: "Create event"] with no attendees
        (see the module's rules), a ``transactionId`` (ours; makes a retried POST answer the
        same event) and, with ``conferencing``, a Teams meeting whose ``joinUrl`` is the
        ``room_url``. Returns the event's (immutable) id."""
        token = self._token(account)
        body = self._content(draft) | {
            "transactionId": f"{TRANSACTION_PREFIX}{draft.call_id}-{secrets.token_hex(6)}",
            "attendees": [],
            "responseRequested": False,
            "allowNewTimeProposals": False,
        }
        teams = bool(account.credentials.get("conferencing"))
        if teams:
            body |= {"isOnlineMeeting": True, "onlineMeetingProvider": "teamsForBusiness"}
        response = await self._call(
            "POST",
            f"{self._calendar_path(account)}/events",
            token,
            json=body,
            idempotent=True,  # Graph answers a repeated transactionId with the same event
        )
        event = self._json(response)
        event_id = event.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise CalendarError("Microsoft Graph created an event without an id")
        room_url = None
        if teams:
            room_url = _join_url(event)
            if room_url is None:  # the meeting may be attached just after the create
                again = await self._call(
                    "GET",
                    self._event_path(event_id),
                    token,
                    params={"$select": "onlineMeeting"},
                )
                room_url = _join_url(self._json(again))
        return CreatedEvent(event_id=event_id, room_url=room_url)

    async def move_event(self, account: CalendarAccount, event_id: str, draft: EventDraft) -> None:
        """``PATCH /me/events/{id}`` [Graph v1.0: "Update event"]: new time, title, location,
        body; same id. An event that is gone raises ``CalendarError``."""
        await self._call(
            "PATCH", self._event_path(event_id), self._token(account), json=self._content(draft)
        )

    async def cancel_event(self, account: CalendarAccount, event_id: str) -> None:
        """``DELETE /me/events/{id}`` [Graph v1.0: "Delete event"]; 404 or 410 (already
        gone) is success. The event has no attendees, so nobody is told."""
        await self._call(
            "DELETE", self._event_path(event_id), self._token(account), accept=(404, 410)
        )

    # -- busy --

    async def busy(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[Interval]:
        """Foreign busy time in ``[start, end)`` (aware UTC), merged: getSchedule first, then
        the calendar view when anything may be busy (see the module's rules)."""
        if not start < end:
            return []
        token = self._token(account)
        calendar_path = self._calendar_path(account)
        mailbox = account.credentials.get("mailbox")
        if mailbox and account.credentials.get("default_calendar") == "true":
            statuses = await self._schedule(token, mailbox, start, end)
            if statuses is not None and not statuses - NOT_BUSY_STATUSES:
                return []
        events = await self._pages(
            token,
            f"{calendar_path}/calendarView",
            {
                "startDateTime": _iso(start),
                "endDateTime": _iso(end),
                "$select": _SELECT,
                "$top": PAGE_SIZE,
            },
        )
        return merge(interval for event in events for interval in _safe_busy(event, start, end))

    async def _schedule(
        self, token: TokenGetter, mailbox: str, start: datetime, end: datetime
    ) -> set[str] | None:
        """The statuses getSchedule reports for ``mailbox`` in ``[start, end)``; None when it
        cannot tell (an error for the schedule, a mailbox or account it does not serve)."""
        response = await self._call(
            "POST",
            "/me/calendar/getSchedule",
            token,
            json={
                "schedules": [mailbox],
                "startTime": graph_stamp(start),
                "endTime": graph_stamp(end),
                "availabilityViewInterval": SCHEDULE_INTERVAL_MINUTES,
            },
            idempotent=True,  # a read
            accept=(400, 403, 404, 501),
        )
        if not response.is_success:
            log.info("getSchedule unavailable (%s); asking calendarView", response.status_code)
            return None
        schedules = [s for s in self._json(response).get("value") or [] if isinstance(s, dict)]
        mine = [s for s in schedules if str(s.get("scheduleId", "")).lower() == mailbox.lower()]
        if len(mine) != 1 or mine[0].get("error"):
            return None
        statuses = set()
        for item in mine[0].get("scheduleItems") or []:
            if not isinstance(item, dict):
                continue
            try:
                item_start, item_end = graph_time(item.get("start")), graph_time(item.get("end"))
            except (ValueError, TypeError):
                return None
            if item_start < end and item_end > start:
                status = str(item.get("status") or "unknown")
                statuses.add(status[:1].lower() + status[1:])  # "Tentative" in some answers
        return statuses

    # -- sync --

    async def sync(
        self, account: CalendarAccount, state: str | None, window: Interval
    ) -> SyncBatch:
        """Changes since ``state`` (an ``@odata.deltaLink``), or every event of ``window``
        when ``state`` is None, not one of this API's links, or expired (Graph's 410,
        ``syncStateNotFound``, ``resyncRequired``). Keys are Graph event ids (occurrences
        have their own); intervals are clipped to ``window``."""
        token = self._token(account)
        calendar_path = self._calendar_path(account)
        if state and self._ours(state):
            try:
                return await self._delta(token, state, None, window, full=False)
            except _ResyncRequired:
                log.info("Graph delta token expired; full sync of %s", account.connection_id)
        params = {"startDateTime": _iso(window.start), "endDateTime": _iso(window.end)}
        try:
            return await self._delta(
                token, f"{calendar_path}/calendarView/delta", params, window, full=True
            )
        except _ResyncRequired:
            raise CalendarError("Microsoft Graph asked for a resync of a full sync") from None

    async def _delta(
        self,
        token: TokenGetter,
        url: str,
        params: Mapping[str, Any] | None,
        window: Interval,
        *,
        full: bool,
    ) -> SyncBatch:
        changes: dict[str, MirrorChange] = {}
        link: str | None = url
        prefer = f"odata.maxpagesize={PAGE_SIZE}, {PREFER}"
        for _ in range(MAX_PAGES):
            if link is None:
                break
            response = await self._call(
                "GET", link, token, params=params, prefer=prefer, accept=(400, 404, 410)
            )
            if response.status_code == 410 or _error_code(response) in RESYNC_CODES:
                raise _ResyncRequired()
            if not response.is_success:
                raise CalendarError(f"Microsoft Graph: {provider_reason(response)}")
            body = self._json(response)
            for event in body.get("value") or []:
                if not isinstance(event, dict) or not isinstance(event.get("id"), str):
                    continue
                key = event["id"]
                changes.pop(key, None)  # the latest word on an event wins, in order
                changes[key] = MirrorChange(key, _safe_busy(event, window.start, window.end))
            params = None
            delta = body.get("@odata.deltaLink")
            if delta is not None:
                state = self._next(delta)
                return SyncBatch(state=state, full=full, changes=tuple(changes.values()))
            link = self._next(body.get("@odata.nextLink"))
            if link is None:
                raise CalendarError("Microsoft Graph ended a delta round without a deltaLink")
        raise CalendarError(f"Microsoft Graph: more than {MAX_PAGES} delta pages")

    # -- push --

    async def watch(self, account: CalendarAccount, address: str, token: str) -> PushChannel:
        """``POST /subscriptions`` [Graph v1.0: "Create subscription"] on ``/me/events`` for
        ``created,updated,deleted``, with ``notificationUrl`` and ``lifecycleNotificationUrl``
        = ``address`` and ``clientState`` = ``token``, for ``SUBSCRIPTION_DAYS`` days. Graph
        validates ``address`` (``?validationToken=``) before answering; a failed validation is
        a 400 (``CalendarError``). Renew by watching again and unwatching the old channel.

        A timed-out create is not retried (Graph does not deduplicate subscriptions).
        """
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=SUBSCRIPTION_DAYS)
        response = await self._call(
            "POST",
            "/subscriptions",
            self._token(account),
            json={
                "changeType": "created,updated,deleted",
                "notificationUrl": address,
                "lifecycleNotificationUrl": address,
                "resource": "/me/events",
                "expirationDateTime": _iso(expires),
                "clientState": token,
                "latestSupportedTlsVersion": "v1_2",
            },
        )
        subscription = self._json(response)
        if not isinstance(subscription.get("id"), str):
            raise CalendarError("Microsoft Graph created a subscription without an id")
        granted = _parse_expiry(subscription.get("expirationDateTime"))
        return PushChannel(
            channel_id=subscription["id"], resource_id="", expires_at=granted or expires
        )

    async def unwatch(self, account: CalendarAccount, channel: PushChannel) -> None:
        """``DELETE /subscriptions/{id}`` [Graph v1.0: "Delete subscription"]; 404 (already
        gone, or lapsed) is success."""
        await self._call(
            "DELETE",
            f"/subscriptions/{quote(channel.channel_id, safe='')}",
            self._token(account),
            accept=(404,),
        )


def _join_url(event: Mapping[str, Any]) -> str | None:
    meeting = event.get("onlineMeeting")
    if isinstance(meeting, dict) and isinstance(meeting.get("joinUrl"), str):
        return str(meeting["joinUrl"]) or None
    return None

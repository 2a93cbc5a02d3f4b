"""The Nylas API v3 calendar provider: a closer's Google, Microsoft or iCloud calendar, reached
through a Nylas **grant** (https://developer.nylas.com/docs/api/v3/ecc/).

Credentials (``CalendarAccount.credentials``): ``grant_id`` (the Nylas grant of the closer's
account), optional ``conferencing`` (``google_meet``, ``teams`` or ``zoom``) and, for Zoom,
``conf_grant_id`` (the closer's Zoom grant at Nylas). ``connect`` adds ``email`` and ``provider``
(from the grant: free/busy is asked by email, and invitations depend on the provider).
``calendar_id`` is the Nylas calendar id (``primary`` resolves to the grant's main calendar).

Every request carries the application's API key (``Authorization: Bearer
<CLOSERDESK_NYLAS_API_KEY>``; Nylas "Authentication" overview, API keys) and goes through
``ProviderHttp`` (bounded, retried on 429 and 5xx honouring ``Retry-After``). Answers are
``{"request_id": …, "data": …}``; errors ``{"request_id": …, "error": {"type", "message",
"provider_error"?}}`` (Nylas "Errors and HTTP status codes", "Error types").

Rules this module follows:

- **Events we write** carry ``metadata`` ``{"key1": "closerdesk", "closerdesk_call_id": …}``
  (Nylas "Metadata": ``key1``..``key5`` are indexed and filterable with ``metadata_pair``), so
  they are never foreign busy time. They are created with ``notify_participants=false`` (Nylas
  "Create an event", query parameters) and ``busy: true``; the lead is a participant only on
  Google grants, because Microsoft and iCloud ignore ``notify_participants=false`` and would
  email the lead (same reference). Nylas takes no client-chosen event id nor idempotency key, so
  a create is never retried after a timeout, nor after a 500/502/504 (which may come after the
  provider made the event: a 504 ``provider_error`` is the provider timing out); only 429 and
  503 answers, refused before any work, are tried again.
- **Busy time** is Nylas' free/busy (``POST /v3/grants/{id}/calendars/free-busy``, Nylas
  "Get free/busy schedule"; at most 30 days a request), confirmed, when anything is busy, by the
  calendar's events (``GET /v3/grants/{id}/events`` with ``expand_recurring=true``): the time of
  our own events and of free (``busy: false``) events is removed unless a foreign busy event of
  the calendar covers it too. Free/busy answering an ``"object": "error"`` entry (or no email
  known) falls back to the events alone.
- **Sync**: Nylas v3 has no sync or delta token for events, so every sync lists the window
  (expanded, ``limit=200``, paged with ``page_token`` = ``next_cursor``; Nylas "Pagination") and
  is ``full``; the state is ``None``. Webhooks (``/hooks/nylas``, see ``parse_notification``)
  tell closerdesk when to sync again; they are set up once per Nylas application, not per
  calendar, so this provider has no ``watch``.
- **All-day events** (``when`` of type ``date``/``datespan``) are read as UTC days, the
  ``datespan`` ``end_date`` inclusive; a ``time`` (a single instant) is never busy.
- **Refusals** (a decision, since Nylas answers 401 both for a bad API key and for a grant the
  provider no longer honours): an error whose ``type`` starts with ``grant.`` (e.g.
  ``grant.not_found`` 404, ``grant.refresh_token_invalid`` 401, ``grant.access_denied`` 403),
  a 401/403 carrying a ``provider_error`` (the provider refused Nylas' token for that user), and
  a 403 (missing scopes) mean **the grant** is refused: ``CalendarAuthError``, the connection
  turns invalid. ``token.unauthorized_access`` ("Invalid API key") is **closerdesk's
  configuration**: ``CalendarError`` naming ``CLOSERDESK_NYLAS_API_KEY``. Any other 401 is
  settled by asking for the grant itself (``GET /v3/grants/{id}``, which needs only the API key):
  a 401 there is the API key again; otherwise the grant is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from closerdesk.calendars.http import ProviderHttp, RetryPolicy, provider_reason
from closerdesk.calendars.oauth import TokenSource
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    CreatedEvent,
    EventDraft,
    MirrorChange,
    ProviderNotConfigured,
    SyncBatch,
)
from closerdesk.config import Settings
from closerdesk.scheduling.intervals import Interval, merge

log = structlog.get_logger(__name__)

MARKER_KEY = "key1"
MARKER_VALUE = "closerdesk"
"""``metadata.key1 == "closerdesk"``: one of ours (an indexed key, so it can be filtered on)."""
CALL_ID_KEY = "closerdesk_call_id"
"""``metadata.closerdesk_call_id``: the call the event is for; its presence marks it ours too."""

CONFERENCING_PROVIDERS = {
    "google_meet": "Google Meet",
    "teams": "Microsoft Teams",
    "zoom": "Zoom Meeting",
}
"""closerdesk's ``conferencing`` values → Nylas ``conferencing.provider`` names."""

INVITE_SAFE_PROVIDERS = frozenset({"google"})
"""Grant providers that honour ``notify_participants=false`` (Nylas "Create an event": not
Microsoft, not iCloud); on others the lead is not added as a participant at all."""

FREE_BUSY_MAX = timedelta(days=30)
"""Nylas free/busy covers at most 30 days from ``start_time`` per request."""
PAGE_LIMIT = 200
"""Nylas' largest page (``limit``)."""
MAX_PAGES = 100
"""How many pages of events one listing follows (20,000 events)."""

_TITLE_MAX, _DESCRIPTION_MAX, _LOCATION_MAX = 1024, 8192, 255
"""Nylas "Create an event" body limits (characters)."""

API_KEY_SETTING = "CLOSERDESK_NYLAS_API_KEY"


# --- notifications (webhooks) ----------------------------------------------------------------


@dataclass(frozen=True)
class NylasNotification:
    """One Nylas webhook notification (Nylas "Notification schemas"), reduced to what a sync
    needs: ``type`` (``event.created``, ``event.updated``, ``event.deleted``, ``grant.expired``,
    ``grant.deleted``…, a ``.truncated`` suffix kept as sent), the ``grant_id``, the
    ``calendar_id`` and the object's ``id`` (``None`` when the object has none, e.g. grants)."""

    type: str
    grant_id: str
    calendar_id: str | None
    object_id: str | None


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` (the ``X-Nylas-Signature`` header) is the hex HMAC-SHA256 of the raw
    ``body`` keyed with the webhook's secret (Nylas "Using webhooks", verifying notifications).
    Constant-time; a missing signature or secret is never valid."""
    if not secret or not signature:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # Bytes: compare_digest refuses non-ASCII str, and a forged header may carry anything.
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def parse_notification(body: bytes) -> NylasNotification:
    """The notification in a webhook body (CloudEvents-like envelope: ``specversion``, ``type``,
    ``source``, ``id``, ``time``, ``data.application_id``, ``data.object``). Raises
    ``ValueError`` when the body is not JSON or lacks ``type``, ``data.object`` or its
    ``grant_id``."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON notification: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("a notification is a JSON object")
    kind = payload.get("type")
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(kind, str) or not kind or not isinstance(obj, dict):
        raise ValueError("a notification needs a type and data.object")
    grant_id = obj.get("grant_id")
    if not isinstance(grant_id, str) or not grant_id:
        raise ValueError("the notification's object has no grant_id")
    calendar_id = obj.get("calendar_id")
    object_id = obj.get("id")
    return NylasNotification(
        type=kind,
        grant_id=grant_id,
        calendar_id=calendar_id if isinstance(calendar_id, str) and calendar_id else None,
        object_id=object_id if isinstance(object_id, str) and object_id else None,
    )


# --- reading events --------------------------------------------------------------------------


def is_own(event: Mapping[str, Any]) -> bool:
    """Whether a Nylas event is one closerdesk wrote (its ``metadata`` marker)."""
    metadata = event.get("metadata")
    if not isinstance(metadata, dict):
        return False
    return metadata.get(MARKER_KEY) == MARKER_VALUE or CALL_ID_KEY in metadata


def _day(value: Any) -> datetime:
    return datetime.combine(date.fromisoformat(str(value)), time.min, tzinfo=UTC)


def _epoch(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a Unix time: {value!r}")
    return datetime.fromtimestamp(float(value), UTC)


def event_span(event: Mapping[str, Any]) -> Interval | None:
    """The event's time as UTC (Nylas ``when``: ``timespan`` with ``start_time``/``end_time`` in
    Unix seconds; ``date`` one UTC day; ``datespan`` ``start_date``..``end_date`` inclusive);
    ``None`` for a ``time`` (an instant), an empty span or an unreadable ``when``."""
    when = event.get("when")
    if not isinstance(when, dict):
        return None
    try:
        if "start_time" in when and "end_time" in when:
            start, end = _epoch(when["start_time"]), _epoch(when["end_time"])
        elif "date" in when:
            start = _day(when["date"])
            end = start + timedelta(days=1)
        elif "start_date" in when and "end_date" in when:
            start = _day(when["start_date"])
            end = _day(when["end_date"]) + timedelta(days=1)
        else:
            return None
    except (ValueError, TypeError, OverflowError):
        log.warning("nylas.unreadable_when", event_id=event.get("id"))
        return None
    return Interval(start, end) if start < end else None


def is_busy(event: Mapping[str, Any]) -> bool:
    """Whether a Nylas event is foreign busy time: not ours, not ``busy: false``, not
    ``status: cancelled``."""
    return (
        not is_own(event)
        and event.get("busy", True) is not False
        and event.get("status") != "cancelled"
    )


def busy_of(event: Mapping[str, Any], start: datetime, end: datetime) -> list[Interval]:
    """The event's foreign busy time clipped to ``[start, end)`` (empty when it is not busy)."""
    span = event_span(event)
    if span is None or not is_busy(event):
        return []
    clipped_start, clipped_end = max(span.start, start), min(span.end, end)
    return [Interval(clipped_start, clipped_end)] if clipped_start < clipped_end else []


def subtract(intervals: Iterable[Interval], removed: Iterable[Interval]) -> list[Interval]:
    """``intervals`` minus ``removed``, merged and sorted."""
    cuts = merge(removed)
    result: list[Interval] = []
    for interval in merge(intervals):
        start = interval.start
        for cut in cuts:
            if cut.end <= start or cut.start >= interval.end:
                continue
            if cut.start > start:
                result.append(Interval(start, cut.start))
            start = max(start, cut.end)
            if start >= interval.end:
                break
        if start < interval.end:
            result.append(Interval(start, interval.end))
    return result


# --- errors ----------------------------------------------------------------------------------


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_type(response: httpx.Response) -> str:
    return str(_error(response).get("type") or "")


def _api_key_refused(response: httpx.Response) -> bool:
    """Nylas' own words say the API key is wrong (``token.unauthorized_access``)."""
    error = _error(response)
    kind = str(error.get("type") or "")
    message = str(error.get("message") or "").lower()
    return kind == "token.unauthorized_access" or "api key" in message


def _grant_refused(response: httpx.Response) -> bool:
    """The answer itself says the grant is refused (see the module doc, "Refusals")."""
    if _api_key_refused(response):
        return False
    error = _error(response)
    if str(error.get("type") or "").startswith("grant."):
        return True
    if response.status_code in (401, 403) and error.get("provider_error"):
        return True
    return response.status_code == 403


def _config_error(response: httpx.Response) -> CalendarError:
    return CalendarError(
        f"Nylas refused closerdesk's API key (check {API_KEY_SETTING}): {provider_reason(response)}"
    )


def _retry_create(response: httpx.Response) -> bool:
    """A create is tried again only after answers given before any work: 429 and 503."""
    return response.status_code in (429, 503)


# --- the provider ----------------------------------------------------------------------------


class NylasCalendar:
    """``CalendarProvider`` for calendars reached through Nylas API v3 (see the module doc).

    ``tokens`` is accepted for the factory's sake and unused (Nylas authenticates with the
    application's API key, not per-user OAuth tokens); ``transport`` routes the HTTP requests
    elsewhere (tests); ``policy`` replaces ``RetryPolicy(budget=calendar_retry_seconds)``.
    """

    name = "nylas"

    def __init__(
        self,
        settings: Settings,
        *,
        tokens: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._base = settings.nylas_api_uri.rstrip("/")
        self._api_key = settings.nylas_api_key.get_secret_value() if settings.nylas_api_key else ""
        policy = policy or RetryPolicy(budget=settings.calendar_retry_seconds)
        timeout = settings.calendar_timeout_seconds
        self._http = ProviderHttp(
            "Nylas", timeout=timeout, policy=policy, refused=_grant_refused, transport=transport
        )
        self._create_http = ProviderHttp(
            "Nylas",
            timeout=timeout,
            policy=policy,
            retryable=_retry_create,
            refused=_grant_refused,
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        await self._http.aclose()
        await self._create_http.aclose()

    # -- plumbing --

    async def _token(self, force: bool) -> str:
        """The bearer token: the API key (``force`` changes nothing, there is no refresh).
        Raises ``ProviderNotConfigured`` naming the setting when it is unset."""
        if not self._api_key:
            raise ProviderNotConfigured(f"Nylas is not configured: set {API_KEY_SETTING}")
        return self._api_key

    @staticmethod
    def _grant_id(account: CalendarAccount) -> str:
        grant_id = account.credentials.get("grant_id")
        if not grant_id:
            raise CalendarError("Nylas credentials need a grant_id")
        return grant_id

    @staticmethod
    def _calendar(account: CalendarAccount) -> str:
        return account.calendar_id or "primary"

    def _url(self, grant_id: str, *parts: str) -> str:
        path = "/".join(quote(part, safe="") for part in (grant_id, *parts))
        return f"{self._base}/v3/grants/{path}"

    async def _call(
        self,
        grant_id: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        gone_ok: bool = False,
        create: bool = False,
    ) -> httpx.Response:
        """One request; refusals classified (module doc, "Refusals"). ``gone_ok``: a 404 that is
        not about the grant is returned (an event already gone)."""
        await self._token(False)  # fail before any request without an API key
        http = self._create_http if create else self._http
        response = await http.request(
            method,
            url,
            token=self._token,
            params=params,
            json=json,
            idempotent=idempotent,
            accept=(401, 403, 404),
        )
        if response.is_success:
            return response
        if response.status_code == 404 and _error_type(response) != "grant.not_found":
            if gone_ok:
                return response
            raise CalendarError(f"Nylas: {provider_reason(response)}")
        raise await self._refusal(grant_id, response)

    async def _refusal(self, grant_id: str, response: httpx.Response) -> CalendarError:
        """The error for a 401/403/404 answer about the grant."""
        reason = provider_reason(response)
        if _api_key_refused(response):
            return _config_error(response)
        if _error_type(response) == "grant.not_found":
            return CalendarAuthError(f"Nylas: no such grant ({reason})")
        if _grant_refused(response):
            return CalendarAuthError(f"Nylas refused the grant: {reason}")
        # A bare 401: the API key or the grant? The grant's own record needs only the key.
        probe = await self._http.request(
            "GET", self._url(grant_id), token=self._token, accept=(401, 403, 404)
        )
        if probe.status_code in (401, 403) and not _grant_refused(probe):
            return _config_error(probe)
        if probe.status_code == 404:
            return CalendarAuthError(f"Nylas: no such grant ({reason})")
        if probe.is_success and _data(probe).get("grant_status") == "invalid":
            return CalendarAuthError(f"Nylas grant invalid: reconnect ({reason})")
        return CalendarAuthError(f"Nylas refused the grant: {reason}")

    # -- connect --

    async def connect(self, account: CalendarAccount) -> CalendarAccount:
        """Check the grant (``GET /v3/grants/{grant_id}``: ``grant_status`` must be ``valid``)
        and find the calendar (``GET /v3/grants/{grant_id}/calendars/{calendar_id}``, ``primary``
        by default; Nylas "Return a calendar"). Returns the account with ``calendar_id`` = the
        calendar's Nylas id and the grant's ``email`` and ``provider`` added to the credentials.

        Raises ``CalendarAuthError`` ("no such grant", "grant invalid: reconnect", a refusal,
        conferencing Nylas cannot create with these credentials: Zoom without the member's Zoom
        grant ``conf_grant_id``), ``ProviderNotConfigured`` (no API key), ``CalendarError`` (a
        wrong API key, an unknown or read-only calendar, any failure).
        """
        grant_id = self._grant_id(account)
        try:
            self._conferencing(account)
        except CalendarError as exc:
            raise CalendarAuthError(str(exc)) from None
        await self._token(False)
        response = await self._http.request(
            "GET", self._url(grant_id), token=self._token, accept=(401, 403, 404)
        )
        if response.status_code == 404:
            raise CalendarAuthError(f"Nylas: no such grant ({provider_reason(response)})")
        if response.status_code in (401, 403):
            # The grant's record needs only the API key: a refusal here is closerdesk's.
            if _grant_refused(response):
                raise CalendarAuthError(f"Nylas refused the grant: {provider_reason(response)}")
            raise _config_error(response)
        grant = _data(response)
        if grant.get("grant_status") != "valid":
            raise CalendarAuthError("Nylas grant invalid: reconnect")
        calendar_id = account.calendar_id or account.credentials.get("calendar_id") or "primary"
        calendar = _data(
            await self._call(grant_id, "GET", self._url(grant_id, "calendars", calendar_id))
        )
        found = calendar.get("id")
        if not isinstance(found, str) or not found:
            raise CalendarError("Nylas answered a calendar without an id")
        if calendar.get("read_only") is True:
            raise CalendarError("the Nylas calendar is read-only: choose one that accepts events")
        credentials = dict(account.credentials)
        for key in ("email", "provider"):
            value = grant.get(key)
            if isinstance(value, str) and value:
                credentials[key] = value
        return replace(account, calendar_id=found, credentials=credentials)

    # -- events --

    def _event_body(self, account: CalendarAccount, draft: EventDraft) -> dict[str, Any]:
        invite = account.credentials.get("provider") in INVITE_SAFE_PROVIDERS
        return {
            "title": draft.title[:_TITLE_MAX],
            "description": draft.description[:_DESCRIPTION_MAX],
            "location": draft.location[:_LOCATION_MAX],
            "when": {
                "start_time": math.floor(draft.starts_at.timestamp()),
                "end_time": math.ceil(draft.ends_at.timestamp()),
            },
            "participants": [{"email": email} for email in draft.attendees] if invite else [],
            "busy": True,
            "metadata": {MARKER_KEY: MARKER_VALUE, CALL_ID_KEY: draft.call_id},
        }

    def _conferencing(self, account: CalendarAccount) -> dict[str, Any] | None:
        wanted = account.credentials.get("conferencing")
        if not wanted:
            return None
        provider = CONFERENCING_PROVIDERS.get(wanted)
        if provider is None:
            raise CalendarError(f"Nylas cannot create '{wanted}' conferencing")
        autocreate: dict[str, Any] = {}
        if provider == "Zoom Meeting":
            # Nylas "Create an event": Zoom needs the user's Zoom grant (conf_grant_id).
            conf_grant = account.credentials.get("conf_grant_id")
            if not conf_grant:
                raise CalendarError("Zoom conferencing through Nylas needs a conf_grant_id")
            autocreate["conf_grant_id"] = conf_grant
        return {"provider": provider, "autocreate": autocreate}

    def _write_params(self, account: CalendarAccount) -> dict[str, str]:
        return {"calendar_id": self._calendar(account), "notify_participants": "false"}

    async def create_event(self, account: CalendarAccount, draft: EventDraft) -> CreatedEvent:
        """``POST /v3/grants/{grant_id}/events?calendar_id=…&notify_participants=false`` (Nylas
        "Create an event"): the draft as a ``timespan`` in Unix seconds, ``busy: true``, our
        metadata marker, the lead as participant on Google grants, and, when the connection asks
        for it, ``conferencing.autocreate``. Returns the event id and
        ``data.conferencing.details.url`` (``None`` while the provider has not made the room).
        Not retried after a timeout (module doc)."""
        grant_id = self._grant_id(account)
        body = self._event_body(account, draft)
        conferencing = self._conferencing(account)
        if conferencing is not None:
            body["conferencing"] = conferencing
        response = await self._call(
            grant_id,
            "POST",
            self._url(grant_id, "events"),
            params=self._write_params(account),
            json=body,
            idempotent=False,
            create=True,
        )
        event = _data(response)
        event_id = event.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise CalendarError("Nylas answered the new event without an id")
        return CreatedEvent(event_id, _room_url(event))

    async def move_event(self, account: CalendarAccount, event_id: str, draft: EventDraft) -> None:
        """``PUT /v3/grants/{grant_id}/events/{event_id}?calendar_id=…&notify_participants=false``
        (Nylas "Update an event"): new time, title, location and description, same id.
        Conferencing is left as it is (Nylas keeps fields a request leaves out)."""
        grant_id = self._grant_id(account)
        await self._call(
            grant_id,
            "PUT",
            self._url(grant_id, "events", event_id),
            params=self._write_params(account),
            json=self._event_body(account, draft),
        )

    async def cancel_event(self, account: CalendarAccount, event_id: str) -> None:
        """``DELETE /v3/grants/{grant_id}/events/{event_id}?calendar_id=…&notify_participants=
        false`` (Nylas "Delete an event"); an event already gone (404) is not an error, an
        unknown grant (404 ``grant.not_found``) is a refusal."""
        grant_id = self._grant_id(account)
        await self._call(
            grant_id,
            "DELETE",
            self._url(grant_id, "events", event_id),
            params=self._write_params(account),
            gone_ok=True,
        )

    # -- reading --

    async def _events(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Every event of the calendar touching ``[start, end]`` (Nylas "Return all events":
        ``start``/``end`` Unix seconds, ``expand_recurring=true``, ``limit=200``, pages followed
        with ``page_token``)."""
        grant_id = self._grant_id(account)
        params: dict[str, Any] = {
            "calendar_id": self._calendar(account),
            "start": math.floor(start.timestamp()),
            "end": math.ceil(end.timestamp()),
            "expand_recurring": "true",
            "limit": PAGE_LIMIT,
        }
        events: list[dict[str, Any]] = []
        for _page in range(MAX_PAGES):
            response = await self._call(
                grant_id, "GET", self._url(grant_id, "events"), params=params
            )
            body = _body(response)
            page = body.get("data")
            if not isinstance(page, list):
                raise CalendarError("Nylas answered an event list without data")
            events.extend(item for item in page if isinstance(item, dict))
            cursor = body.get("next_cursor")
            if not isinstance(cursor, str) or not cursor:
                return events
            params = {**params, "page_token": cursor}
        log.warning("nylas.events_truncated", pages=MAX_PAGES)
        return events

    async def _free_busy(
        self, grant_id: str, email: str, start: datetime, end: datetime
    ) -> list[Interval] | None:
        """Busy slots of ``email`` in ``[start, end)`` (Nylas "Get free/busy schedule", asked in
        pieces of at most 30 days); ``None`` when Nylas answers an error entry for it."""
        slots: list[Interval] = []
        piece_start = start
        while piece_start < end:
            piece_end = min(end, piece_start + FREE_BUSY_MAX)
            response = await self._call(
                grant_id,
                "POST",
                self._url(grant_id, "calendars", "free-busy"),
                json={
                    "start_time": math.floor(piece_start.timestamp()),
                    "end_time": math.ceil(piece_end.timestamp()),
                    "emails": [email],
                },
                idempotent=True,  # a read, whatever its method
            )
            entries = _body(response).get("data")
            if not isinstance(entries, list):
                raise CalendarError("Nylas answered free/busy without data")
            entry = next(
                (
                    e
                    for e in entries
                    if isinstance(e, dict) and str(e.get("email", "")).lower() == email.lower()
                ),
                None,
            )
            if entry is None or entry.get("object") == "error":
                reason = entry.get("error") if isinstance(entry, dict) else "no entry"
                log.warning("nylas.free_busy_error", reason=str(reason)[:200])
                return None
            for slot in entry.get("time_slots") or []:
                if not isinstance(slot, dict) or slot.get("status", "busy") != "busy":
                    continue
                try:
                    slot_start = max(_epoch(slot["start_time"]), start)
                    slot_end = min(_epoch(slot["end_time"]), end)
                except (KeyError, ValueError, TypeError, OverflowError):
                    continue
                if slot_start < slot_end:
                    slots.append(Interval(slot_start, slot_end))
            piece_start = piece_end
        return merge(slots)

    async def busy(
        self, account: CalendarAccount, start: datetime, end: datetime
    ) -> list[Interval]:
        """Live foreign busy time in ``[start, end)``, merged and sorted (module doc, "Busy
        time"): free/busy first; when it shows anything, the calendar's events confirm it."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if not start < end:
            return []
        grant_id = self._grant_id(account)
        email = account.credentials.get("email")
        slots = await self._free_busy(grant_id, email, start, end) if email else None
        if slots is not None and not slots:
            return []
        events = await self._events(account, start, end)
        foreign = merge(i for event in events for i in busy_of(event, start, end))
        if slots is None:
            return foreign
        not_foreign: list[Interval] = []
        for event in events:
            span = event_span(event)
            if span is None or is_busy(event):
                continue
            clipped_start, clipped_end = max(span.start, start), min(span.end, end)
            if clipped_start < clipped_end:
                not_foreign.append(Interval(clipped_start, clipped_end))
        return subtract(slots, subtract(not_foreign, foreign))

    async def sync(
        self, account: CalendarAccount, state: str | None, window: Interval
    ) -> SyncBatch:
        """Every event of the calendar in ``window``, always a full batch (Nylas v3 has no
        sync token; ``state`` is ignored and ``None`` is returned). Keys are Nylas event ids
        (an expanded recurrence: one key per instance); ours, free and cancelled events have no
        intervals; busy time is clipped to the window."""
        start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
        intervals: dict[str, list[Interval]] = {}
        for event in await self._events(account, start, end):
            key = event.get("id")
            if not isinstance(key, str) or not key:
                continue
            intervals.setdefault(key, []).extend(busy_of(event, start, end))
        changes = tuple(
            MirrorChange(key, tuple(merge(found))) for key, found in sorted(intervals.items())
        )
        return SyncBatch(state=None, full=True, changes=changes)


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise CalendarError("Nylas answered something that is not JSON") from None
    if not isinstance(body, dict):
        raise CalendarError("Nylas answered something that is not a JSON object")
    return body


def _data(response: httpx.Response) -> dict[str, Any]:
    data = _body(response).get("data")
    if not isinstance(data, dict):
        raise CalendarError("Nylas answered without data")
    return data


def _room_url(event: Mapping[str, Any]) -> str | None:
    conferencing = event.get("conferencing")
    details = conferencing.get("details") if isinstance(conferencing, dict) else None
    url = details.get("url") if isinstance(details, dict) else None
    return url if isinstance(url, str) and url else None

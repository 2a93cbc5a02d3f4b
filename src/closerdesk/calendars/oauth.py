"""OAuth 2.0 for the calendars that need it (Google, Microsoft): consent, code, refresh.

``docs/calendars.md`` ("Connecting Google" / "Connecting Microsoft 365") describes the flow:

1. ``PUT /v1/team/{id}/calendar`` without a ``refresh_token`` answers 202 with an
   ``authorization_url`` (RFC 6749 §4.1 authorization code, RFC 7636 PKCE ``S256``). Its
   ``state`` is sealed with the process's encryption keys (Fernet: encrypted and authenticated,
   timestamped), so it carries the member, the calendar and the PKCE verifier without a table
   and without showing the verifier to the browser; it expires after
   ``CLOSERDESK_OAUTH_STATE_SECONDS``.
2. The provider sends the browser to ``GET /oauth/{provider}/callback?code=…&state=…``, which
   exchanges the code for tokens and saves the connection (only the refresh token is stored,
   encrypted).
3. Access tokens live in memory (``TokenSource``), per connection: refreshed a minute before
   they expire and once more when a provider answers 401. A token endpoint answering
   ``invalid_grant`` (RFC 6749 §5.2: revoked, expired, or the password changed) is a refusal:
   the connection turns ``invalid``. A refresh token the provider rotates (Microsoft does) is
   passed to ``on_rotate`` to be stored.

URLs, PKCE and token requests are built with ``authlib``; the requests themselves go through
``calendars/http.py`` (bounded, retried).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import OAuth2Token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from closerdesk.calendars.http import ProviderHttp, RetryPolicy, TokenGetter
from closerdesk.calendars.provider import (
    CalendarAccount,
    CalendarAuthError,
    CalendarError,
    ProviderNotConfigured,
)
from closerdesk.config import Settings
from closerdesk.kit.secrets import SecretBox, UndecryptableSecret

GOOGLE_SCOPES = (
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.freebusy",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
)
"""Google Calendar API scopes: events (write, list, watch), free/busy, the calendar list."""
MICROSOFT_SCOPES = ("offline_access", "User.Read", "Calendars.ReadWrite")
"""Microsoft identity platform scopes: a refresh token, the user, the user's calendars."""

REFRESH_MARGIN = timedelta(seconds=60)
"""An access token this close to its expiry is refreshed before use."""

OAUTH_PROVIDERS = ("google", "microsoft")


class OAuthNotConfigured(ProviderNotConfigured):
    """The provider's OAuth client (``CLOSERDESK_<PROVIDER>_CLIENT_ID``/``_SECRET``) is unset."""


class InvalidState(Exception):
    """An OAuth ``state`` that this process did not make, or made too long ago."""


@dataclass(frozen=True)
class OAuthApp:
    """One OAuth client of closerdesk at a provider (from the settings)."""

    provider: str
    client_id: str
    client_secret: str
    authorization_uri: str
    token_uri: str
    scopes: tuple[str, ...]
    extra: Mapping[str, str] = field(default_factory=dict)
    """Extra authorization parameters (Google: ``access_type=offline``, ``prompt=consent``)."""


def oauth_app(settings: Settings, provider: str) -> OAuthApp:
    """The OAuth client for ``provider`` (``google`` or ``microsoft``). Raises
    ``OAuthNotConfigured`` naming the settings to set when its id or secret is missing."""
    if provider == "google":
        client_id, secret = settings.google_client_id, settings.google_client_secret
        if not client_id or secret is None:
            raise OAuthNotConfigured(
                "Google is not configured: set CLOSERDESK_GOOGLE_CLIENT_ID and "
                "CLOSERDESK_GOOGLE_CLIENT_SECRET"
            )
        return OAuthApp(
            provider="google",
            client_id=client_id,
            client_secret=secret.get_secret_value(),
            authorization_uri=settings.google_authorization_uri,
            token_uri=settings.google_token_uri,
            scopes=GOOGLE_SCOPES,
            # A refresh token is only issued with offline access, and again on every consent.
            extra={"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"},
        )
    if provider == "microsoft":
        client_id, secret = settings.microsoft_client_id, settings.microsoft_client_secret
        if not client_id or secret is None:
            raise OAuthNotConfigured(
                "Microsoft is not configured: set CLOSERDESK_MICROSOFT_CLIENT_ID and "
                "CLOSERDESK_MICROSOFT_CLIENT_SECRET"
            )
        tenant = settings.microsoft_tenant
        return OAuthApp(
            provider="microsoft",
            client_id=client_id,
            client_secret=secret.get_secret_value(),
            authorization_uri=settings.microsoft_authorization_uri.replace("{tenant}", tenant),
            token_uri=settings.microsoft_token_uri.replace("{tenant}", tenant),
            scopes=MICROSOFT_SCOPES,
            extra={"response_mode": "query"},
        )
    raise OAuthNotConfigured(f"provider '{provider}' does not use OAuth")


def redirect_uri(settings: Settings, provider: str) -> str:
    """``{public_base_url}/oauth/{provider}/callback``: register it with the provider."""
    return f"{settings.oauth_redirect_base}/{provider}/callback"


# --- step 1: the consent URL ---------------------------------------------------------------------


@dataclass(frozen=True)
class Authorization:
    """A consent URL to open in the member's browser, usable until ``expires_at`` (UTC)."""

    url: str
    expires_at: datetime


def begin(
    app: OAuthApp,
    box: SecretBox,
    settings: Settings,
    request: Mapping[str, str],
) -> Authorization:
    """The authorization URL for a connection request (``organization_id``, ``member_id``,
    ``calendar_id``, ``conferencing``…, all strings): PKCE S256, with ``request`` and the
    code verifier sealed into ``state``."""
    verifier = generate_token(64)
    sealed = dict(request) | {"provider": app.provider, "verifier": verifier}
    state = box.encrypt_json(sealed)
    url = prepare_grant_uri(
        app.authorization_uri,
        client_id=app.client_id,
        response_type="code",
        redirect_uri=redirect_uri(settings, app.provider),
        scope=" ".join(app.scopes),
        state=state,
        code_challenge=create_s256_code_challenge(verifier),  # type: ignore[no-untyped-call]
        code_challenge_method="S256",
        **dict(app.extra),
    )
    expires = datetime.now(UTC) + timedelta(seconds=settings.oauth_state_seconds)
    return Authorization(url=url, expires_at=expires)


def open_state(box: SecretBox, settings: Settings, provider: str, state: str) -> dict[str, str]:
    """The connection request sealed by ``begin``. Raises ``InvalidState`` when the state is
    forged, damaged, older than ``CLOSERDESK_OAUTH_STATE_SECONDS`` or for another provider."""
    try:
        sealed = box.decrypt_recent_json(state, max_age_seconds=settings.oauth_state_seconds)
    except UndecryptableSecret:
        raise InvalidState("the state is not one closerdesk made, or it has expired") from None
    if sealed.get("provider") != provider or "verifier" not in sealed:
        raise InvalidState(f"the state was not made for {provider}")
    return sealed


# --- steps 2 and 3: tokens ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    """A token endpoint's answer: the access token, when it expires (epoch seconds), and the
    refresh token (None when the provider kept the old one)."""

    access_token: str
    expires_at: float
    refresh_token: str | None


def _invalid_grant(response: httpx.Response) -> bool:
    """RFC 6749 §5.2: ``invalid_grant`` is the grant's fault (revoked, expired); every other
    error (``invalid_client``…) is closerdesk's configuration, not the member's."""
    if response.status_code not in (400, 401):
        return False
    try:
        return bool(response.json().get("error") == "invalid_grant")
    except (ValueError, AttributeError):
        return False


def token_http(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> ProviderHttp:
    """The client for token endpoints: refusals are only ``invalid_grant`` answers."""
    return ProviderHttp(
        "the token endpoint",
        timeout=settings.calendar_timeout_seconds,
        policy=RetryPolicy(budget=settings.calendar_retry_seconds),
        refused=_invalid_grant,
        transport=transport,
    )


async def _token_request(
    http: ProviderHttp, app: OAuthApp, body: str, *, idempotent: bool
) -> Tokens:
    response = await http.request(
        "POST",
        app.token_uri,
        data=dict(parse_qsl(body)),
        headers={"Accept": "application/json"},
        idempotent=idempotent,
    )
    try:
        payload = response.json()
        token = OAuth2Token.from_dict(payload)  # type: ignore[no-untyped-call]
        access = str(token["access_token"])
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        raise CalendarError(f"{app.provider} sent an unreadable token response") from None
    expires_at = float(token.get("expires_at") or time.time() + 3600)
    refresh = payload.get("refresh_token")
    return Tokens(access, expires_at, str(refresh) if refresh else None)


async def exchange_code(
    http: ProviderHttp, app: OAuthApp, settings: Settings, code: str, verifier: str
) -> Tokens:
    """Trade an authorization code (and its PKCE verifier) for tokens. Raises
    ``CalendarAuthError`` (the code is refused), ``CalendarError``."""
    body = prepare_token_request(
        "authorization_code",
        code=code,
        redirect_uri=redirect_uri(settings, app.provider),
        client_id=app.client_id,
        client_secret=app.client_secret,
        code_verifier=verifier,
    )
    # A code works once (RFC 6749 §4.1.2): an exchange that timed out is not repeated.
    return await _token_request(http, app, body, idempotent=False)


async def refresh(http: ProviderHttp, app: OAuthApp, refresh_token: str) -> Tokens:
    """A new access token for ``refresh_token``. Raises ``CalendarAuthError`` on
    ``invalid_grant`` (the member revoked access), ``CalendarError`` otherwise."""
    body = prepare_token_request(
        "refresh_token",
        refresh_token=refresh_token,
        client_id=app.client_id,
        client_secret=app.client_secret,
        scope=" ".join(app.scopes),
    )
    return await _token_request(http, app, body, idempotent=True)  # a refresh can be repeated


@dataclass
class _Cached:
    access_token: str
    expires_at: float
    refresh_token: str
    known: set[str] = field(default_factory=set)
    """Every refresh token of this connection this cache has used or been given (a rotated
    one is stored, so the account read next time carries it)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


RotateHook = Callable[[CalendarAccount, str], Awaitable[None]]
"""``on_rotate(account, new_refresh_token)``: store a refresh token the provider replaced."""


class TokenSource:
    """Access tokens of one provider's connections, kept in memory.

    ``getter(account)`` is what ``ProviderHttp.request`` takes as ``token``. Tokens are cached
    per connection, refreshed ``REFRESH_MARGIN`` before they expire or when forced (after a
    401), one refresh at a time per connection. A refresh token the cache does not know (the
    calendar was connected again) starts the connection afresh.
    """

    def __init__(
        self,
        app: Callable[[], OAuthApp],
        http: ProviderHttp,
        on_rotate: RotateHook | None = None,
    ) -> None:
        self._app = app
        self._http = http
        self.on_rotate = on_rotate
        self._cache: dict[str, _Cached] = {}

    @classmethod
    def for_provider(
        cls, settings: Settings, provider: str, on_rotate: RotateHook | None = None
    ) -> TokenSource:
        """The tokens of ``provider``'s OAuth app in ``settings`` (``google``, ``microsoft``),
        on a token-endpoint client of its own (``token_http``) that ``aclose`` closes."""
        return cls(
            functools.partial(oauth_app, settings, provider), token_http(settings), on_rotate
        )

    async def aclose(self) -> None:
        """Close the token endpoint's client. The calendar provider holding this source
        closes it with its own clients."""
        await self._http.aclose()

    def getter(self, account: CalendarAccount) -> TokenGetter:
        """The bearer-token function of ``account``. Raises ``CalendarAuthError`` when the
        account holds no refresh token."""
        stored = account.credentials.get("refresh_token")
        if not stored:
            raise CalendarAuthError("no refresh token stored: connect the calendar again")

        async def token(force: bool) -> str:
            cached = self._cache.get(account.connection_id)
            if cached is None or stored not in cached.known:
                cached = _Cached("", 0.0, stored, {stored})
                self._cache[account.connection_id] = cached
            async with cached.lock:
                fresh_enough = cached.expires_at - REFRESH_MARGIN.total_seconds() > time.time()
                if cached.access_token and fresh_enough and not force:
                    return cached.access_token
                tokens = await refresh(self._http, self._app(), cached.refresh_token)
                cached.access_token, cached.expires_at = tokens.access_token, tokens.expires_at
                if tokens.refresh_token and tokens.refresh_token != cached.refresh_token:
                    cached.refresh_token = tokens.refresh_token
                    cached.known.add(tokens.refresh_token)
                    if self.on_rotate is not None:
                        await self.on_rotate(account, tokens.refresh_token)
                return cached.access_token

        return token

    def forget(self, connection_id: str) -> None:
        """Drop a connection's cached tokens (it was disconnected)."""
        self._cache.pop(connection_id, None)

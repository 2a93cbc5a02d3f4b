"""The OAuth 2.0 side of a fake provider: an authorization endpoint and a token endpoint.

Speaks RFC 6749 (§4.1 authorization code grant, §6 refresh, §5.2 error responses) with RFC 7636
PKCE (``S256``), as Google's (https://developers.google.com/identity/protocols/oauth2/web-server)
and the Microsoft identity platform's
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow) endpoints do:

* ``GET {authorize_path}``: checks ``client_id``, ``redirect_uri``, ``response_type=code``,
  ``code_challenge_method=S256`` and answers 302 to ``redirect_uri?code=…&state=…`` (the
  consent a user would give); ``consent_denied`` answers ``error=access_denied`` instead.
* ``POST {token_path}`` (form-encoded): ``authorization_code`` (checks the verifier against the
  challenge, the redirect URI, the client secret; a code works once) and ``refresh_token``;
  ``invalid_grant`` (400) for an unknown, used or revoked grant, ``invalid_client`` (401) for a
  wrong secret. ``rotate_refresh_tokens`` makes every refresh return a new refresh token
  (Microsoft does; Google does not).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class OAuthServer:
    client_id: str
    client_secret: str
    authorize_path: str
    token_path: str
    access_token_seconds: int = 3600
    rotate_refresh_tokens: bool = False
    consent_denied: bool = False
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    """refresh token → user (the account it is for)."""
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    """access token → (user, expires at, epoch seconds)."""
    user: str = "closer@example.com"
    """Whose consent the authorization endpoint gives."""

    # -- what tests use --

    def grant(self, user: str | None = None) -> str:
        """A refresh token for ``user``, as a partner that ran the consent itself would have."""
        token = "1//rt-" + secrets.token_urlsafe(16)
        self.refresh_tokens[token] = user or self.user
        return token

    def revoke(self, user: str | None = None) -> None:
        """The user removed closerdesk's access: every token of theirs stops working."""
        who = user or self.user
        self.refresh_tokens = {t: u for t, u in self.refresh_tokens.items() if u != who}
        self.access_tokens = {t: v for t, v in self.access_tokens.items() if v[0] != who}

    def expire_access_tokens(self) -> None:
        """Every access token handed out is now expired (the next API call answers 401)."""
        self.access_tokens = {t: (u, 0.0) for t, (u, _) in self.access_tokens.items()}

    def user_of(self, authorization: str | None) -> str | None:
        """The user behind an ``Authorization: Bearer …`` header, or None (401)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        found = self.access_tokens.get(authorization.removeprefix("Bearer "))
        if found is None or found[1] < time.time():
            return None
        return found[0]

    # -- routes --

    def routes(self) -> list[Route]:
        return [
            Route(self.authorize_path, self._authorize, methods=["GET"]),
            Route(self.token_path, self._token, methods=["POST"]),
        ]

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        redirect = q["redirect_uri"]
        if self.consent_denied:
            query = {"error": "access_denied", "state": q.get("state", "")}
            return RedirectResponse(f"{redirect}?{urlencode(query)}", status_code=302)
        code = "4/code-" + secrets.token_urlsafe(12)
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "redirect_uri": redirect,
            "user": self.user,
            "scope": q.get("scope", ""),
        }
        query = {"code": code, "state": q.get("state", "")}
        return RedirectResponse(f"{redirect}?{urlencode(query)}", status_code=302)

    def _issue(self, user: str, refresh_token: str | None) -> JSONResponse:
        access = "ya29.at-" + secrets.token_urlsafe(16)
        self.access_tokens[access] = (user, time.time() + self.access_token_seconds)
        body: dict[str, object] = {
            "access_token": access,
            "expires_in": self.access_token_seconds,
            "token_type": "Bearer",
            "scope": "calendar",
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Unauthorized"}, status_code=401
            )
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code = self.codes.pop(str(form.get("code")), None)
            verifier = str(form.get("code_verifier", ""))
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (
                code is None
                or code["challenge"] != challenge
                or code["redirect_uri"] != form.get("redirect_uri")
            ):
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "Bad Request"},
                    status_code=400,
                )
            return self._issue(code["user"], self.grant(code["user"]))
        if grant_type == "refresh_token":
            token = str(form.get("refresh_token"))
            user = self.refresh_tokens.get(token)
            if user is None:
                return JSONResponse(
                    {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    },
                    status_code=400,
                )
            new_refresh = None
            if self.rotate_refresh_tokens:
                new_refresh = self.grant(user)
            return self._issue(user, new_refresh)
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

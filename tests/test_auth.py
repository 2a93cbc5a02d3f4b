"""API keys (SPEC §1, §2): `Bearer cdk_…`, revocable, scopes admin ⊇ write ⊇ read."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from closerdesk.auth.service import issue_key, revoke_key
from closerdesk.config import Settings
from closerdesk.db import Database
from tests.factories import Org

try:  # FastAPI ≥ 0.120 keeps included routers lazily; this walks into them.
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI lists flat routes
    iter_route_contexts = None


def _assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["code"] == code
    assert body["requestId"] == r.headers["X-Request-Id"]
    assert body["error"]
    return body


def _api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves."""
    routes: list[tuple[str, str]] = []
    flat = iter_route_contexts(app.routes) if iter_route_contexts else app.routes
    for route in flat:
        original = getattr(route, "original_route", route)
        if not isinstance(original, APIRoute):
            continue
        for method in sorted(route.methods or ()):
            routes.append((method, route.path))
    return routes


# --- 401 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token cdk_whatever",
        "cdk_no_scheme",
        "Bearer cdk_unknownkeyunknownkeyunknownkey",
        "Bearer not_a_cdk_key",
        "Bearer cdk_" + "x" * 500,
    ],
)
async def test_bad_credentials_are_401(
    client: httpx.AsyncClient, org: Org, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    r = await client.get("/v1/leads", headers=headers)
    _assert_error(r, 401, "UNAUTHORIZED")


async def test_wrong_scheme_with_a_valid_key_is_401(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.get("/v1/leads", headers={"Authorization": f"Basic {org.admin_key}"})
    _assert_error(r, 401, "UNAUTHORIZED")
    # The scheme is case-insensitive (RFC 7235).
    r = await client.get("/v1/leads", headers={"Authorization": f"bearer {org.admin_key}"})
    assert r.status_code == 200


async def test_every_api_route_needs_a_key(client: httpx.AsyncClient, app: FastAPI) -> None:
    """Every route under /v1 answers 401 without a key, whatever its parameters."""
    routes = [(m, p) for m, p in _api_routes(app) if p.startswith("/v1/")]
    assert len(routes) >= 30
    for method, path in routes:
        url = path.replace("{", "").replace("}", "")  # e.g. /v1/calls/call_id
        r = await client.request(method, url, json={} if method != "GET" else None)
        _assert_error(r, 401, "UNAUTHORIZED")


async def test_revoked_key_is_401(
    app: FastAPI, client: httpx.AsyncClient, org: Org, database: Database, settings: Settings
) -> None:
    """Revoked in this process (its key cache told): refused at once (docs/api.md,
    "Authentication"); tests/test_read_paths.py covers a revocation by another process."""
    async with database.writer() as s:
        issued = await issue_key(
            s, secret_key=settings.secret_key, organization_id=org.id, scope="admin"
        )
        await s.commit()
    headers = {"Authorization": f"Bearer {issued.api_key}"}
    assert (await client.get("/v1/leads", headers=headers)).status_code == 200
    async with database.writer() as s:
        assert await revoke_key(s, issued.id, cache=app.state.key_cache) is True
        await s.commit()
    _assert_error(await client.get("/v1/leads", headers=headers), 401, "UNAUTHORIZED")
    r = await client.post("/v1/leads", headers=headers, json={"email": "x@example.com"})
    _assert_error(r, 401, "UNAUTHORIZED")
    async with database.writer() as s:
        assert await revoke_key(s, issued.id) is False  # already revoked
    # The organization's other keys still work.
    assert (await client.get("/v1/leads", headers=org.headers)).status_code == 200


async def test_key_is_not_accepted_in_the_query_string(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.get("/v1/leads", params={"api_key": org.admin_key})
    _assert_error(r, 401, "UNAUTHORIZED")


# --- 403 and scope ordering ----------------------------------------------------------------------
async def test_read_key_on_a_write_route_is_403(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post("/v1/leads", headers=org.auth("read"), json={"email": "r@example.com"})
    body = _assert_error(r, 403, "FORBIDDEN")
    assert "write" in body["error"]
    listed = await client.get("/v1/leads", headers=org.auth("read"))
    assert listed.json()["data"] == []  # nothing was created


async def test_write_key_on_an_admin_route_is_403(client: httpx.AsyncClient, org: Org) -> None:
    r = await client.post(
        "/v1/team",
        headers=org.auth("write"),
        json={"name": "N", "email": "n@example.com", "role": "closer"},
    )
    _assert_error(r, 403, "FORBIDDEN")


_SCOPES = ("read", "write", "admin")
_RANK = {s: i for i, s in enumerate(_SCOPES)}


def _request_for(needed: str, n: int) -> tuple[str, str, dict[str, Any] | None]:
    if needed == "read":
        return "GET", "/v1/products", None
    if needed == "write":
        return "POST", "/v1/products", {"name": f"P{n}", "price": 100}
    return "POST", "/v1/team", {"name": f"M{n}", "email": f"m{n}@example.com", "role": "closer"}


@pytest.mark.parametrize("key_scope", _SCOPES)
@pytest.mark.parametrize("needed", _SCOPES)
async def test_scope_ordering_admin_write_read(
    client: httpx.AsyncClient, org: Org, key_scope: str, needed: str
) -> None:
    method, url, body = _request_for(needed, _RANK[key_scope])
    r = await client.request(method, url, headers=org.auth(key_scope), json=body)
    if _RANK[key_scope] >= _RANK[needed]:
        assert r.status_code in (200, 201), r.text
    else:
        _assert_error(r, 403, "FORBIDDEN")


async def test_scope_is_checked_before_the_resource(client: httpx.AsyncClient, org: Org) -> None:
    """A read key learns nothing about ids on write routes: 403 whether the id exists or not."""
    r = await client.patch("/v1/leads/lead_nope", headers=org.auth("read"), json={})
    _assert_error(r, 403, "FORBIDDEN")


async def test_key_of_one_org_never_sees_another(
    client: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    r = await client.post("/v1/leads", headers=other_org.headers, json={"email": "o@example.com"})
    assert r.status_code == 201
    for scope in _SCOPES:
        listed = await client.get("/v1/leads", headers=org.auth(scope))
        assert listed.json()["data"] == []

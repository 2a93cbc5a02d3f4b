"""Idempotent POST and PATCH routes: the key's claim, the replay, the answer recorded in the
request's transaction, and the OpenAPI declarations (docs/idempotency.md).

``make_idempotent(router)`` gives every POST and PATCH route of a router the
``Idempotency-Key`` dependency and wraps its handler; ``document_idempotency(app)`` declares the
header, ``Idempotent-Replayed`` and the two errors in ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session as SyncSession

from closerdesk.auth.service import authenticate
from closerdesk.config import Settings
from closerdesk.db import Database, Session
from closerdesk.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from closerdesk.idempotency import store

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
"""1–255 printable ASCII characters; no space first or last (HTTP strips them)."""
METHODS = frozenset({"POST", "PATCH"})
STATE_KEY = "idempotency"

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


@dataclass
class ActiveClaim:
    """The key this request holds (``request.state.idempotency``) while it runs."""

    id: str
    database: Database
    session: AsyncSession
    finished: bool = False


class IdempotentReplay(Exception):
    """Raised by the dependency: answer the stored response instead of running the handler."""

    def __init__(self, stored: store.Stored) -> None:
        super().__init__("replay")
        self.stored = stored

    def response(self) -> Response:
        return Response(
            content=self.stored.body,
            status_code=self.stored.status,
            media_type="application/json",
            headers={REPLAYED_HEADER: "true"},
        )


async def idempotency_key(
    request: Request,
    session: Session,
    key: Annotated[
        str | None,
        Header(
            alias=KEY_HEADER,
            min_length=1,
            max_length=255,
            pattern=KEY_PATTERN,
            description=(
                "Makes a retry safe: the first answer (not a 5xx) is kept 24 h and replayed "
                "with `Idempotent-Replayed: true` to the same request with the same key."
            ),
        ),
    ] = None,
) -> None:
    """Claim ``Idempotency-Key`` before the handler runs (docs/idempotency.md).

    Raises ``IdempotentReplay`` (the same request answered before), 422
    ``IDEMPOTENCY_KEY_REUSED`` (another request used the key) or 409
    ``IDEMPOTENCY_KEY_IN_USE`` (the first is still running). Without a valid API key it does
    nothing: the route's own authentication answers 401.
    """
    if key is None or request.method not in METHODS:
        return
    database: Database = request.app.state.database
    organization_id = await _organization(request, database)
    if organization_id is None:
        return
    path = request.scope["path"]
    query = request.scope.get("query_string", b"")
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    print_ = store.fingerprint(request.method, path, await request.body())
    outcome = await store.claim(database, organization_id, key, print_)
    if isinstance(outcome, store.Stored):
        raise IdempotentReplay(outcome)
    if isinstance(outcome, store.Reused):
        raise IdempotencyKeyReused()
    if isinstance(outcome, store.InUse):
        raise IdempotencyKeyInUse()
    claim = ActiveClaim(outcome.id, database, session)
    statement = store.mark_applied_statement(claim.id)

    def _applied(sync_session: SyncSession) -> None:
        # Every commit of the request's session carries this: once the change has committed,
        # the key is never run again (an endpoint that commits its own unit of work first).
        sync_session.execute(statement)

    event.listen(session.sync_session, "before_commit", _applied)
    setattr(request.state, STATE_KEY, claim)


async def _organization(request: Request, database: Database) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return None
    settings: Settings = request.app.state.settings
    # The same key cache as the API-key dependency: both decide alike for the same key, so a
    # request that key accepts is never run without its claim (docs/api.md, "Authentication").
    async with database.read_only() as session:
        context = await authenticate(
            session,
            secret_key=settings.secret_key,
            api_key=credentials.strip(),
            cache=request.app.state.key_cache,
        )
    return None if context is None else context.organization_id


def _wrap(build: Callable[[], Handler]) -> Callable[[], Handler]:
    def get_route_handler() -> Handler:
        handler = build()

        async def idempotent(request: Request) -> Response:
            try:
                response = await handler(request)
            except IdempotentReplay as replay:
                return replay.response()
            claim: ActiveClaim | None = getattr(request.state, STATE_KEY, None)
            body = getattr(response, "body", None)
            if claim is not None and response.status_code < 500 and isinstance(body, bytes):
                # Still inside the request's transaction: get_session commits the answer with
                # the change (or with nothing, when the change committed on its own first).
                await store.finish(claim.session, claim.id, response.status_code, body)
                claim.finished = True
            return response

        return idempotent

    return get_route_handler


def make_idempotent(router: APIRouter) -> None:
    """Give every POST and PATCH route of ``router`` the ``Idempotency-Key`` handling.

    Call before the router is included; calling it again (another app) changes nothing.
    """
    for route in router.routes:
        if not isinstance(route, APIRoute) or not (set(route.methods or ()) & METHODS):
            continue
        if getattr(route, "_closerdesk_idempotent", False):
            continue
        route.dependencies.append(Depends(idempotency_key))
        route.get_route_handler = _wrap(route.get_route_handler)  # type: ignore[method-assign]
        route._closerdesk_idempotent = True  # type: ignore[attr-defined]


_ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
_REPLAYED = {
    "description": "`true` when this is the stored answer of an earlier request with the key.",
    "schema": {"type": "string", "enum": ["true"]},
}


def document_idempotency(app: FastAPI) -> None:
    """Declare ``Idempotent-Replayed`` on every answer that can be replayed (2xx, 4xx) of an
    operation taking ``Idempotency-Key``, and its 409 and 422 errors."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        done = app.openapi_schema is not None
        schema = generate()
        if done:
            return schema
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict) or not _takes_key(operation):
                    continue
                responses = operation.setdefault("responses", {})
                for status, code in ((409, IdempotencyKeyInUse), (422, IdempotencyKeyReused)):
                    known = responses.get(str(status))
                    if known is None:
                        responses[str(status)] = {
                            "description": f"Error: `{code.code}`",
                            "content": {"application/json": {"schema": _ENVELOPE}},
                        }
                    elif code.code not in known.get("description", ""):
                        known["description"] = f"{known['description']}, `{code.code}`"
                for status, response in responses.items():
                    if status[:1] in {"2", "4"}:
                        response.setdefault("headers", {})[REPLAYED_HEADER] = _REPLAYED
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _takes_key(operation: dict[str, Any]) -> bool:
    return any(
        parameter.get("in") == "header" and parameter.get("name") == KEY_HEADER
        for parameter in operation.get("parameters", [])
    )

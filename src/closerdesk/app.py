"""``create_app()``: settings, database, providers, middleware, error envelope, routers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from closerdesk import __version__
from closerdesk.auth.service import KeyCache
from closerdesk.booking_links.endpoints import router as booking_links_router
from closerdesk.calls.endpoints import router as calls_router
from closerdesk.calls.public_endpoints import router as ics_router
from closerdesk.config import Settings, get_settings
from closerdesk.db import Database, Session
from closerdesk.errors import (
    ApiError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    responses,
)
from closerdesk.hooks.endpoints import router as hooks_router
from closerdesk.idempotency.middleware import IdempotencyMiddleware
from closerdesk.idempotency.routes import document_idempotency, make_idempotent
from closerdesk.kit.openapi import readable_schema_names
from closerdesk.kit.rate_limit_http import (
    RateLimitMiddleware,
    decision_of,
    document_rate_limits,
    refuse_over_address_limit,
)
from closerdesk.kit.rate_limits import RateLimiter
from closerdesk.kit.schemas import Envelope, ErrorEnvelope
from closerdesk.kit.secrets import secret_box
from closerdesk.leads.endpoints import router as leads_router
from closerdesk.meet.endpoints import router as meet_router
from closerdesk.middleware import REQUEST_ID_HEADER, RequestContextMiddleware, error_body
from closerdesk.oauth.endpoints import router as oauth_router
from closerdesk.payments.endpoints import router as payments_router
from closerdesk.products.endpoints import router as products_router
from closerdesk.providers import Providers, default_providers
from closerdesk.team.endpoints import router as team_router
from closerdesk.webhooks.dispatcher import Dispatcher
from closerdesk.webhooks.endpoints import router as webhooks_router
from closerdesk.webhooks.openapi import add_webhooks
from closerdesk.worker import CalendarWorker, run_background

log = structlog.get_logger(__name__)

INTERNAL_ERROR: dict[int | str, dict[str, Any]] = {
    500: {"model": ErrorEnvelope, "description": "Error: `INTERNAL_ERROR`"},
}
API_ERRORS: dict[int | str, dict[str, Any]] = {
    **responses(ValidationFailed, Unauthorized, Forbidden, RateLimited, ServiceUnavailable),
    **INTERNAL_ERROR,
}
# Routes without an API key: counted per client address (docs/rate-limits.md).
PUBLIC = [Depends(refuse_over_address_limit)]
PUBLIC_ERRORS: dict[int | str, dict[str, Any]] = {**responses(RateLimited), **INTERNAL_ERROR}


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    providers: Providers | None = None,
    background: bool = False,
) -> FastAPI:
    """The Partner API. ``database``/``providers`` default to those the settings describe;
    ``background`` runs the background work in process while serving (webhook dispatcher,
    calendar clean-ups and busy-mirror sync: ``closerdesk.worker``).

    Raises ``RuntimeError`` (production with a default secret or key) and
    ``InvalidEncryptionKeys`` (``CLOSERDESK_ENCRYPTION_KEYS`` not a list of Fernet keys)."""
    settings = settings or get_settings()
    settings.check_production_ready()
    box = secret_box(settings)
    database = database or Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    active_providers = providers or default_providers(settings, database)
    own_providers = providers is None

    dispatcher = Dispatcher(database, settings, box=box)
    calendar_worker = CalendarWorker(database, settings, active_providers)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = (
            asyncio.create_task(run_background(stop, dispatcher, calendar_worker))
            if background
            else None
        )
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            await dispatcher.aclose()
            if own_providers:
                await active_providers.aclose()
            await database.dispose()

    app = FastAPI(
        title="closerdesk Partner API",
        version=__version__,
        description=(
            "Calls, closers, leads and webhooks of a high-ticket sales team. "
            "Authenticate with `Authorization: Bearer cdk_…`. Every error answers "
            '`{"success": false, "error", "code", "requestId"}`.'
        ),
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.providers = active_providers
    app.state.secret_box = box
    app.state.dispatcher = dispatcher
    app.state.key_cache = KeyCache(settings.api_key_cache_seconds)
    app.state.rate_limiter = rate_limiter = RateLimiter(
        per_key=settings.rate_limit_per_key,
        per_org=settings.rate_limit_per_org,
        auth_failures=settings.rate_limit_auth_failures,
        per_address=settings.rate_limit_per_address,
        redis_url=settings.redis_url,
    )
    app.add_middleware(IdempotencyMiddleware)  # inside the request context (docs/idempotency.md)
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, on_error=internal_error
    )
    # Outside the request context: it writes the RateLimit-* headers on its answers too.
    app.add_middleware(RateLimitMiddleware, limiter=rate_limiter)
    _install_error_handlers(app)

    for router in (
        calls_router,
        leads_router,
        team_router,
        products_router,
        payments_router,
        booking_links_router,
        webhooks_router,
    ):
        make_idempotent(router)  # Idempotency-Key on its POST and PATCH (docs/idempotency.md)
        app.include_router(router, responses=API_ERRORS)
    app.include_router(meet_router, responses=PUBLIC_ERRORS, dependencies=PUBLIC)
    app.include_router(ics_router, responses=PUBLIC_ERRORS, dependencies=PUBLIC)
    app.include_router(
        oauth_router,
        responses={**responses(ValidationFailed), **PUBLIC_ERRORS},
        dependencies=PUBLIC,
    )
    app.include_router(hooks_router, responses=PUBLIC_ERRORS, dependencies=PUBLIC)

    @app.get(
        "/health",
        operation_id="getHealth",
        tags=["health"],
        response_model=Envelope[dict[str, str]],
        responses={**responses(ServiceUnavailable), **PUBLIC_ERRORS},
        dependencies=PUBLIC,
    )
    async def health(session: Session) -> Envelope[dict[str, str]]:
        """Liveness and database reachability. No API key needed."""
        try:
            await session.execute(text("SELECT 1"))
        except Exception as exc:
            raise ServiceUnavailable("The database is not reachable.") from exc
        return Envelope(data={"status": "ok", "database": database.dialect, "version": __version__})

    _document_400_not_422(app)
    document_idempotency(app)
    document_rate_limits(app)
    return app


def operation_id(route: APIRoute) -> str:
    """A readable ``operationId``: the route's name in camelCase (``get_call`` → ``getCall``).

    Names are unique across the API (a test checks it); a route may set its own
    ``operation_id`` instead."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def _document_400_not_422(app: FastAPI) -> None:
    """The document's finishing touches: the ``webhooks`` section, readable schema names, and:
    validation errors answer 400 ``VALIDATION_ERROR`` (declared on every operation), so the
    422 FastAPI adds to the document on its own would describe an answer never given; and the
    middleware's 413/415 are declared on every operation that takes a body."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
                    if isinstance(operation, dict) and "requestBody" in operation:
                        # Answered by the middleware for every operation that takes a body.
                        for status, code in (
                            (413, "PAYLOAD_TOO_LARGE"),
                            (415, "UNSUPPORTED_MEDIA_TYPE"),
                        ):
                            operation["responses"][str(status)] = {
                                "description": f"Error: `{code}`",
                                "content": {"application/json": {"schema": {"$ref": _ENVELOPE}}},
                            }
            components = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            add_webhooks(schema)  # what partners receive, one schema per event type
            readable_schema_names(schema)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


_ENVELOPE = "#/components/schemas/ErrorEnvelope"
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock


def _is_transient(exc: Exception) -> bool:
    """A database error that a retry can clear: SQLite busy, PostgreSQL deadlock/serialization."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if "database is locked" in str(orig):
        return True
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return sqlstate in _TRANSIENT_SQLSTATES


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "req_unknown"))


def _envelope(
    request: Request, error: ApiError, headers: Mapping[str, str] | None = None
) -> Response:
    request_id = _request_id(request)
    # An unhandled error's answer is sent outside the middleware (Starlette's error middleware
    # wraps them all): the rate-limit headers of a request already counted are written here.
    decision = decision_of(request.scope)
    limits = decision.headers(status=error.status) if decision is not None else {}
    return Response(
        content=error_body(error, request_id),
        status_code=error.status,
        media_type="application/json",
        headers={**limits, **(headers or {}), REQUEST_ID_HEADER: request_id},
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's);
    only those of routes whose path has no parameter when there is one."""
    routes: Iterable[Any] = request.app.routes
    try:  # FastAPI ≥ 0.120 keeps included routers whole; this walks into them.
        from fastapi.routing import iter_route_contexts

        routes = [context.route for context in iter_route_contexts(request.app.routes)]
    except ImportError:  # pragma: no cover - older FastAPI lists every route flat
        pass
    matching = [
        route
        for route in routes
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] is not Match.NONE
    ]
    # A path written out in full owns it: ``/v1/calls/bulk-reassign`` is not a call id, although
    # ``/v1/calls/{call_id}`` would match it too (the OpenAPI document lists the literal path).
    literal = [r for r in matching if "{" not in getattr(r, "path", "{")]
    methods: set[str] = set()
    for route in literal or matching:
        methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _envelope(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = []
        for error in exc.errors():
            message = str(error.get("msg", "invalid"))
            field = _field(tuple(error.get("loc", ())))
            if error.get("type") == "json_invalid":
                # loc is ("body", <character offset>): the field is the body itself.
                field, message = "body", "the body is not valid JSON"
            elif error.get("type") == "missing" and tuple(error.get("loc", ())) == ("body",):
                message = "a JSON body is required"
            details.append({"field": field, "message": message})
        first = details[0] if details else {"field": "body", "message": "invalid"}
        return _envelope(
            request, ValidationFailed(f"{first['field']}: {first['message']}", details=details)
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _envelope(request, NotFound(f"No route {request.method} {request.url.path}."))
        if exc.status_code == 400:
            # FastAPI's answer to a body its JSON parser gave up on (nested 10,000 deep: the
            # parser's recursion limit) is a validation error like any other bad body.
            return _envelope(
                request, ValidationFailed.field("body", "the body is not valid JSON (too deep?)")
            )
        if exc.status_code == 405:
            # RFC 9110 §15.5.6: a 405 lists the allowed methods in ``Allow``.
            allow = {"Allow": _allowed_methods(request)}
            return _envelope(request, MethodNotAllowed(), headers=allow)
        return _envelope(
            request,
            ApiError(str(exc.detail), status=exc.status_code, code=f"HTTP_{exc.status_code}"),
        )

    app.add_exception_handler(Exception, internal_error)


async def internal_error(request: Request, exc: Exception) -> Response:
    """An exception no handler took: 503 ``SERVICE_UNAVAILABLE`` with ``Retry-After`` for a
    busy database, else 500 ``INTERNAL_ERROR`` (logged with its traceback). Called by
    ``RequestContextMiddleware``, which sends the answer as a normal, complete response (the
    connection stays open for the next request)."""
    if _is_transient(exc):
        log.warning("database_busy", error_type=type(exc).__name__)
        busy = ServiceUnavailable("The database is busy; retry shortly.")
        return _envelope(request, busy, headers={"Retry-After": "1"})
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return _envelope(request, ApiError())

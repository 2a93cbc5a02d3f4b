"""``ReadKey``/``WriteKey``/``AdminKey``: the authenticated organization of a request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from closerdesk.auth.service import AuthContext, KeyCache, Scope, authenticate, cached_context
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.errors import Forbidden, RateLimited, Unauthorized
from closerdesk.kit.query import reject_unknown_query_parameters
from closerdesk.kit.rate_limit_http import client_address, remember
from closerdesk.kit.rate_limits import RateLimiter

_bearer = HTTPBearer(auto_error=False, bearerFormat="cdk_…", description="API key")


def require_scope(scope: Scope) -> Callable[..., Awaitable[AuthContext]]:
    """A dependency answering 401 ``UNAUTHORIZED``, 403 ``FORBIDDEN`` or 429 ``RATE_LIMITED``
    before the endpoint."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> AuthContext:
        # Rate limits (docs/rate-limits.md): an address that has spent its failed-authentication
        # budget is refused before its key is looked at; every 401 counts against it.
        limiter: RateLimiter = request.app.state.rate_limiter
        address = client_address(request.scope)
        blocked = await limiter.auth_blocked(address)
        if blocked is not None:
            remember(request.scope, blocked)
            raise RateLimited()
        if credentials is None or credentials.scheme.lower() != "bearer":
            await _count_failure(request, limiter, address)
            raise Unauthorized()
        settings: Settings = request.app.state.settings
        database: Database = request.app.state.database
        # A key looked up in the last few seconds is answered from this process's cache
        # (docs/api.md, "Authentication"); else its own short read, outside the request's
        # transaction (on SQLite a write lock for the whole database) that starts only when
        # the service first touches the database.
        cache: KeyCache = request.app.state.key_cache
        api_key = credentials.credentials
        context = cached_context(cache, secret_key=settings.secret_key, api_key=api_key)
        if context is None:
            async with database.read_only() as session:
                context = await authenticate(
                    session, secret_key=settings.secret_key, api_key=api_key, cache=cache
                )
        if context is None:
            await _count_failure(request, limiter, address)
            raise Unauthorized("The API key is unknown or has been revoked.")
        decision = await limiter.hit_key(context.api_key_id, context.organization_id)
        remember(request.scope, decision)
        if not decision.allowed:
            raise RateLimited()
        if not context.allows(scope):
            raise Forbidden(f"This API key has scope '{context.scope}'; '{scope}' is needed.")
        # Every /v1 route passes here, once the caller is known: refuse misspelt filters too.
        reject_unknown_query_parameters(request)
        request.state.auth = context
        return context

    return dependency


async def _count_failure(request: Request, limiter: RateLimiter, address: str) -> None:
    """Count a 401 of this address; the one over the budget (concurrent requests can all pass
    the check above at once) already answers 429 (docs/rate-limits.md)."""
    decision = await limiter.hit_auth_failure(address)
    remember(request.scope, decision)
    if not decision.allowed:
        raise RateLimited()


ReadKey = Annotated[AuthContext, Depends(require_scope("read"), scope="function")]
WriteKey = Annotated[AuthContext, Depends(require_scope("write"), scope="function")]
AdminKey = Annotated[AuthContext, Depends(require_scope("admin"), scope="function")]

"""``ReadKey``/``WriteKey``/``AdminKey``: the authenticated organization of a request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from closerdesk.auth.service import AuthContext, Scope, authenticate
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.errors import Forbidden, Unauthorized
from closerdesk.kit.query import reject_unknown_query_parameters

_bearer = HTTPBearer(auto_error=False, bearerFormat="cdk_…", description="API key")


def require_scope(scope: Scope) -> Callable[..., Awaitable[AuthContext]]:
    """A dependency answering 401 ``UNAUTHORIZED`` or 403 ``FORBIDDEN`` before the endpoint."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> AuthContext:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized()
        settings: Settings = request.app.state.settings
        database: Database = request.app.state.database
        # Its own short read transaction: the request's transaction (on SQLite a write lock
        # for the whole database) starts only when the service first touches the database,
        # so nothing slow a service does first (a webhook target's DNS) runs under it.
        async with database.reader() as session:
            context = await authenticate(
                session, secret_key=settings.secret_key, api_key=credentials.credentials
            )
        if context is None:
            raise Unauthorized("The API key is unknown or has been revoked.")
        if not context.allows(scope):
            raise Forbidden(f"This API key has scope '{context.scope}'; '{scope}' is needed.")
        # Every /v1 route passes here, once the caller is known: refuse misspelt filters too.
        reject_unknown_query_parameters(request)
        request.state.auth = context
        return context

    return dependency


ReadKey = Annotated[AuthContext, Depends(require_scope("read"), scope="function")]
WriteKey = Annotated[AuthContext, Depends(require_scope("write"), scope="function")]
AdminKey = Annotated[AuthContext, Depends(require_scope("admin"), scope="function")]

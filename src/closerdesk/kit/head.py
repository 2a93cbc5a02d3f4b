"""``HEAD`` for the public links: the ``GET`` answer without its body (RFC 9110 §9.3.2).

FastAPI serves ``HEAD`` only where a route says so; the lead-facing links (``/meet/{token}``,
``/ics/{token}``) do, because link checkers, chat previews and mail scanners send ``HEAD``
before (or instead of) ``GET`` (``docs/links.md``).
"""

from __future__ import annotations

from collections.abc import Awaitable

from fastapi import Request, Response

from closerdesk.errors import ApiError
from closerdesk.middleware import error_body

_DROPPED = frozenset({b"x-request-id"})
"""Set again by ``RequestContextMiddleware`` on the way out."""


async def head_of(request: Request, answer: Awaitable[Response]) -> Response:
    """The status and headers ``GET`` would give (``Content-Length`` included), no body. An
    ``ApiError`` becomes the headers of its JSON envelope."""
    try:
        response = await answer
    except ApiError as exc:
        request_id = str(getattr(request.state, "request_id", "req_unknown"))
        response = Response(
            error_body(exc, request_id), status_code=exc.status, media_type="application/json"
        )
    bodiless = Response(status_code=response.status_code)
    bodiless.raw_headers = [(k, v) for k, v in response.raw_headers if k not in _DROPPED]
    return bodiless

"""Pure ASGI middleware: request id, access log, body-size and media-type guards (docs/api.md)."""

from __future__ import annotations

import json
import time

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from closerdesk.errors import ApiError, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from closerdesk.kit.ids import ulid

log = structlog.get_logger("closerdesk.access")
REQUEST_ID_HEADER = "X-Request-Id"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def error_body(error: ApiError, request_id: str) -> bytes:
    body: dict[str, object] = {
        "success": False,
        "error": error.text,
        "code": error.code,
        "requestId": request_id,
    }
    if error.details is not None:
        body["details"] = error.details
    return json.dumps(body).encode()


class RequestContextMiddleware:
    """Gives every request an id (``req_…``), echoes it as ``X-Request-Id``, binds it to logs,
    writes one access-log line, and refuses bodies over the limit (413) or not JSON (415)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{ulid()}"
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER.lower() not in headers:
                    headers.append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await self._send_error(send_with_id, refusal, request_id)
                return
            await self._call_limited(scope, receive, send_with_id, request_id)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status_holder[0],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )

    def _refusal(self, scope: Scope) -> ApiError | None:
        # PostgreSQL cannot hold NUL in text: an id or filter carrying one is a 400, not a 500.
        if "\x00" in scope["path"]:
            return ValidationFailed.field("path", "must not contain NUL (%00)")
        query = scope.get("query_string", b"")
        if b"\x00" in query or b"%00" in query:
            return ValidationFailed.field("query", "must not contain NUL (%00)")
        if scope["method"] not in _BODY_METHODS:
            return None
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return PayloadTooLarge()
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        if has_body:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                return UnsupportedMediaType()
        return None

    async def _call_limited(
        self, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        """Run the app, counting body bytes as they arrive (a chunked body has no
        Content-Length). Past the limit the read fails; whatever the app then answers (FastAPI
        turns a failed body read into its own 400) is replaced by our 413."""
        seen = 0
        exceeded = False
        started = False

        async def limited() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    exceeded = True
                    raise PayloadTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to the failed read; ours is sent below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except PayloadTooLarge:
            if started:
                raise
        if exceeded and not started:
            await self._send_error(send, PayloadTooLarge(), request_id)

    @staticmethod
    async def _send_error(send: Send, error: ApiError, request_id: str) -> None:
        body = error_body(error, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

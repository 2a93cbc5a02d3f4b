"""What happens to a claimed ``Idempotency-Key`` that the handler did not finish
(docs/idempotency.md): an error answer (4xx) is recorded, a 5xx or a crash releases the key.

Pure ASGI. It holds back the answer of such a request until the key is recorded or released,
so a client that retries at once after a 5xx finds the key free.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from closerdesk.idempotency import store
from closerdesk.idempotency.routes import METHODS, STATE_KEY, ActiveClaim


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        status = 0

        def pending() -> ActiveClaim | None:
            claim = scope.get("state", {}).get(STATE_KEY)
            return claim if isinstance(claim, ActiveClaim) and not claim.finished else None

        async def hold(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            claim = pending()
            if claim is None and not held:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                if claim is not None:
                    await self._settle(claim, status, held)
                for kept in held:
                    await send(kept)
                held.clear()

        try:
            await self.app(scope, receive, hold)
        except BaseException:
            claim = scope.get("state", {}).get(STATE_KEY)
            if isinstance(claim, ActiveClaim):
                await store.release(claim.database, claim.id, handled=False)
            raise

    @staticmethod
    async def _settle(claim: ActiveClaim, status: int, held: list[Message]) -> None:
        if status >= 500:
            # An ApiError 5xx (502 calendar provider, 503) states that nothing changed.
            await store.release(claim.database, claim.id, handled=True)
        else:
            body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            await store.record(claim.database, claim.id, status, body)
        claim.finished = True

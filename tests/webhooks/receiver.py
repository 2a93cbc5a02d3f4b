"""A real HTTP webhook receiver on 127.0.0.1 for the tests: uvicorn serving a tiny Starlette
app in a background thread.

It records every request (path, headers, raw body, arrival time), answers ``200`` by default,
and can be scripted per path: a queue of replies (status, headers, delay) used one per request,
then a default reply for that path. It can be stopped (the port then refuses connections) and
started again on the same port.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Reply:
    """What the receiver answers: status, extra headers, an optional delay (seconds)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: str = "ok"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """``time.time()`` when the request had been read completely."""
    status: int
    """What the receiver answered."""

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def name(self) -> str:
        """The last path segment (each subscription gets its own)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]


class Receiver:
    """``Receiver().start()``; ``url("name")`` is an endpoint; ``requests`` what arrived."""

    def __init__(self) -> None:
        self.port = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._requests: list[Received] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._defaults: dict[str, Reply] = {}
        self.default = Reply()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    # --- control ---------------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def start(self) -> Receiver:
        """Listen (on the same port as before, after a ``stop``)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
            backlog=1024,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the receiver did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop listening: attempts then fail with a refused connection."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def reset(self) -> None:
        """Forget requests and scripts (between tests)."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()
            self._defaults.clear()
            self.default = Reply()

    def script(self, name: str, replies: Iterable[Reply]) -> None:
        """Answer the next requests to ``name`` with ``replies``, one each, in order."""
        with self._lock:
            self._scripts[name].extend(replies)

    def always(self, name: str, reply: Reply) -> None:
        """Answer ``name`` with ``reply`` once its script (if any) is used up."""
        with self._lock:
            self._defaults[name] = reply

    # --- what arrived ----------------------------------------------------------------------------
    def requests(self, name: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._requests if name is None or r.name == name]

    def wait_for(
        self,
        predicate: Callable[[list[Received]], bool],
        timeout: float = 10.0,
    ) -> list[Received]:
        """Block (the calling thread) until ``predicate(requests)`` holds; raises on timeout."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(self._requests):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"receiver: condition not met, {len(self._requests)} seen")
                self._arrived.wait(remaining)
            return list(self._requests)

    async def wait_async(
        self, predicate: Callable[[list[Received]], bool], seconds: float = 10.0
    ) -> list[Received]:
        """``wait_for`` without blocking the test's event loop."""
        deadline = time.monotonic() + seconds
        while True:
            current = self.requests()
            if predicate(current):
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver: condition not met, {len(current)} seen")
            await asyncio.sleep(0.02)

    # --- the app ---------------------------------------------------------------------------------
    def _reply_for(self, name: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(name)
            if queue:
                return queue.popleft()
            return self._defaults.get(name, self.default)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        name = path.rstrip("/").rsplit("/", 1)[-1]
        reply = self._reply_for(name)
        received = Received(
            path=path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            at=time.time(),
            status=reply.status,
        )
        with self._arrived:
            self._requests.append(received)
            self._arrived.notify_all()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return Response(reply.body, status_code=reply.status, headers=reply.headers)


def main() -> None:  # pragma: no cover - manual use: python -m tests.webhooks.receiver
    receiver = Receiver().start()
    print(f"listening on {receiver.url('<name>')}")  # noqa: T201
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        receiver.stop()


if __name__ == "__main__":  # pragma: no cover
    main()

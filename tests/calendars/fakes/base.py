"""A local HTTP server for the fakes of cloud calendar APIs (Google, Microsoft Graph, Nylas).

Those services cannot run here, so each fake is a small Starlette app served by uvicorn on a
free 127.0.0.1 port, in a thread of the test process, that speaks the provider's documented
wire format (each fake names its reference). ``FakeApi`` gives every fake the same tools:

* ``requests``: every request received (method, path, query, headers, body), so a test asserts
  what closerdesk sent (``sendUpdates=none``, the bearer token…);
* ``fail(path_part, status, ...)``: the next matching requests answer an error (a 429 with
  ``Retry-After``, a 503, a 401 with the provider's body) or stall past the client's timeout;
* ``url``: the base URL to put in the ``CLOSERDESK_*_URI`` settings.

A subclass adds its routes in ``routes()`` and keeps its state (calendars, events, tokens) in
plain attributes; handlers run on the server's own event loop in its thread, so tests read that
state only after a request has been answered.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True)
class Received:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.body.decode()))


@dataclass
class Fault:
    """Answer the next ``times`` requests whose ``METHOD path`` contains ``match`` with
    ``status``/``body``/``headers``, or stall for ``delay`` seconds first (a timeout)."""

    match: str
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    delay: float = 0.0
    then_pass: bool = False
    """After the delay, answer normally (the request was done, the client stopped waiting)."""


class _Recorder:
    def __init__(self, fake: FakeApi, app: ASGIApp) -> None:
        self.fake, self.app = fake, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        request = Request(scope)
        received = Received(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        self.fake.requests.append(received)
        fault = self.fake._take_fault(f"{received.method} {received.path}")
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and not fault.then_pass:
            answer = (
                Response(status_code=fault.status, headers=fault.headers)
                if fault.body is None
                else JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
            )
            await answer(scope, receive, send)
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class FakeApi:
    """Base of the provider fakes; see the module docstring. Use as a context manager."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- to override --

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    # -- tools --

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(
        self,
        match: str,
        status: int = 500,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
        delay: float = 0.0,
        then_pass: bool = False,
    ) -> None:
        """Queue a fault for the next ``times`` requests whose ``"METHOD /path"`` contains
        ``match``."""
        with self._lock:
            self._faults.append(
                Fault(match, status, body, dict(headers or {}), times, delay, then_pass)
            )

    def _take_fault(self, key: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.match in key:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def received(self, match: str) -> list[Received]:
        """The requests whose ``"METHOD /path"`` contains ``match``, oldest first."""
        return [r for r in self.requests if match in f"{r.method} {r.path}"]

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
        self.requests.clear()

    # -- lifecycle --

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        app = _Recorder(self, Starlette(routes=self.routes()))
        config = uvicorn.Config(app, log_level="warning", lifespan="off", loop="asyncio")
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeApi:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running(fake: FakeApi) -> Iterator[FakeApi]:
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()

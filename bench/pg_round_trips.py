"""A counting TCP proxy in front of PostgreSQL, for bench/api.py's round-trip figures.

A server under test connects to the proxy instead of PostgreSQL; the proxy forwards bytes
both ways untouched and reads the client's side of the wire protocol. A round trip is a
message after which the client waits for the server: a simple ``Query`` ('Q') or a ``Sync``
('S') that ends an extended-protocol exchange. Each is classified by its SQL: ``BEGIN``,
``COMMIT``/``ROLLBACK``, ``ping`` (SQLAlchemy's pre-ping, ``;``), ``prepare`` (a
``Parse``/``Describe`` exchange with no ``Bind``: asyncpg preparing a statement it has not
seen on that connection), or ``statement``. No server setting is needed (no
``log_statement``, no ``pg_stat_statements``).

A server's own background work (closerdesk's in-process webhook dispatcher and calendar
worker poll the database) shares the wire. ``request_counts`` leaves it out: it cuts each
connection's round trips into pool checkouts (SQLAlchemy's pre-ping, ``BEGIN; ;
ROLLBACK``, opens each one) and drops the checkouts that ran a background statement.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from collections.abc import Sequence
from itertools import count as serials

BACKGROUND = (
    "SET next_attempt_at",  # the webhook dispatcher's claim
    "SKIP LOCKED",
    "calendar_cleanups",
)
"""Text of statements only background work sends."""

SSL_REQUEST = 80877103


class Wire:
    """The client half of one connection: buffers bytes, counts round trips."""

    def __init__(self, counts: Counter[str], proxy: RoundTripProxy, number: int) -> None:
        self.counts, self.proxy, self.number = counts, proxy, number
        self.buffer = b""
        self.started = False
        self.prepared: dict[str, str] = {}  # statement name -> SQL
        self.pending: list[tuple[str, str]] = []  # ('parse'|'bind', SQL) since the last Sync

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    return
                (length,) = struct.unpack("!I", self.buffer[:4])
                if len(self.buffer) < length:
                    return
                code = struct.unpack("!I", self.buffer[4:8])[0]
                self.buffer = self.buffer[length:]
                self.started = code != SSL_REQUEST
                continue
            if len(self.buffer) < 5:
                return
            kind = self.buffer[:1]
            (length,) = struct.unpack("!I", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                return
            body, self.buffer = self.buffer[5 : 1 + length], self.buffer[1 + length :]
            self.message(kind, body)

    def message(self, kind: bytes, body: bytes) -> None:
        if kind == b"Q":
            self.count(body.split(b"\0", 1)[0].decode(errors="replace"))
        elif kind == b"P":
            name, sql = body.split(b"\0")[:2]
            self.prepared[name.decode()] = sql.decode(errors="replace")
            self.pending.append(("parse", sql.decode(errors="replace")))
        elif kind == b"B":
            statement = body.split(b"\0")[1].decode()
            self.pending.append(("bind", self.prepared.get(statement, "")))
        elif kind == b"S":
            binds = [sql for what, sql in self.pending if what == "bind"]
            if binds:
                self.count(binds[-1])
            else:
                self.bump("prepare", self.pending[-1][1] if self.pending else "")
            self.pending = []
        elif kind == b"C" and body[:1] == b"S":  # Close of a statement: forget it
            self.prepared.pop(body[1:].split(b"\0")[0].decode(), None)

    def count(self, sql: str) -> None:
        text = sql.strip().rstrip(";").strip()
        word = text.split(None, 1)[0].upper() if text else ""
        if word in {"BEGIN", "START"}:
            self.bump("begin", sql)
        elif word in {"COMMIT", "ROLLBACK", "END"}:
            self.bump("commit", sql)
        elif text in {"", "SELECT 1"}:
            self.bump("ping", sql)
        else:
            self.bump("statement", sql)

    def bump(self, what: str, sql: str) -> None:
        if self.proxy.active:
            self.counts[what] += 1
            self.proxy.events.append((self.number, what, sql))


class RoundTripProxy:
    """``await start()``, point a server at ``port``, set ``active``, read ``counts``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts: Counter[str] = Counter()
        self.events: list[tuple[int, str, str]] = []  # (connection, kind, SQL)
        self.connections = serials()
        self.active = False
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def reset(self) -> None:
        self.counts = Counter()
        self.events = []

    def total(self) -> int:
        return sum(self.counts.values())

    def request_counts(self) -> tuple[Counter[str], int]:
        """Round trips by kind without the background checkouts, and how many were dropped."""
        by_connection: dict[int, list[tuple[str, str]]] = {}
        for number, what, sql in self.events:
            by_connection.setdefault(number, []).append((what, sql))
        kept: Counter[str] = Counter()
        dropped = 0
        for events in by_connection.values():
            for checkout in _checkouts(events):
                if any(mark in sql for _, sql in checkout for mark in BACKGROUND):
                    dropped += 1
                else:
                    kept.update(what for what, _ in checkout)
        return kept, dropped

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        wire = Wire(self.counts, self, next(self.connections))

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                wire.counts = self.counts  # follow reset()
                wire.feed(data)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except (ConnectionError, OSError):
            writer.close()
            up_writer.close()


def _checkouts(events: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Cut one connection's round trips where a pre-ping (``BEGIN``, ``;``) starts."""
    cuts: list[list[tuple[str, str]]] = [[]]
    for index, event in enumerate(events):
        pinged = index + 1 < len(events) and events[index + 1][0] == "ping"
        if event[0] == "begin" and pinged and cuts[-1]:
            cuts.append([])
        cuts[-1].append(event)
    return cuts

"""The baseline of bench/api.py: a bare ASGI app on raw asyncpg serving the same three paths.

* ``GET /v1/calls/{id}`` and ``GET /v1/calls?closer_id=…&limit=…``: one statement each (the
  API key's hash checked in the same query), answered with the same JSON bytes as closerdesk
  (``{"success":true,"data":…}``, fields in the order of docs/api.md "The call object",
  the list's keyset cursor included).
* ``POST /v1/calls/{id}/reassign-closer``: the writes of closerdesk's reassign in one
  transaction: the call locked with its lead, the new closer locked with its calendar, one
  conflict query, then one statement that inserts the new conferencing link and calendar
  event, revokes the old link, cancels the old event, updates the call and the closer, and
  writes the history row, the outbox row and its deliveries.

No validation beyond what the bench needs, no error envelope: it is a yardstick, not a
server. Run by bench/api.py with the same uvicorn options as ``closerdesk serve``:

    python bench/api_baseline.py --port 8102 --url postgresql://…/closerdesk_bench \
        --secret-key … --public-base-url https://desk.example.com
"""

# The SQL below is built from this file's own constants only, never from input.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import asyncpg  # type: ignore[import-untyped]
import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CALL_FIELDS = (
    "id", "call_kind", "lead_id", "closer_id", "setter_id", "booking_link_id", "product_id",
    "scheduled_at", "started_at", "ended_at", "duration_minutes", "status", "conferencing_link",
    "expected_deal_value", "linked_payment_id", "ai_summary", "action_items", "form_data",
    "notes", "recording_url", "transcript_data", "guest_rsvp_status", "guest_rsvp_confirmed_at",
    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "referral",
    "created_at", "updated_at", "closer_name", "closer_email", "time_zone", "calendar_event_id",
    "cancelled_at", "cancel_reason", "confirmed_at", "declined_at", "decline_reason",
    "reschedule_count", "host_no_show", "reason_code", "loss_reason",
)  # fmt: skip
JSON_FIELDS = frozenset({"action_items", "form_data", "transcript_data"})
SELECT_CALL = ", ".join(f"c.{name}" for name in CALL_FIELDS)

GET_CALL = f"""
SELECT {SELECT_CALL} FROM calls c
JOIN api_keys k ON k.organization_id = c.organization_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND c.id = $2"""

LIST_CALLS = f"""
SELECT {SELECT_CALL} FROM calls c
WHERE c.organization_id = (SELECT organization_id FROM api_keys
                           WHERE key_hash = $1 AND revoked_at IS NULL)
  AND c.closer_id = $2
ORDER BY c.scheduled_at ASC NULLS LAST, c.id ASC LIMIT $3"""

LOCK_CALL = """
SELECT c.id, c.organization_id, c.closer_id, c.closer_name, c.scheduled_at, c.ends_at,
       c.duration_minutes, c.time_zone, c.status, c.call_kind, c.sequence,
       c.conferencing_link, c.calendar_event_id, c.calendar_grant_id,
       k.id AS key_id, l.email, l.full_name, l.phone, l.time_zone AS lead_zone
FROM calls c
JOIN api_keys k ON k.organization_id = c.organization_id
JOIN leads l ON l.id = c.lead_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND k.scope IN ('write', 'admin')
  AND c.id = $2
FOR UPDATE OF c"""

LOCK_CLOSER = """
SELECT m.id, m.name, m.email, cc.id AS connection_id
FROM team_members m
JOIN calendar_connections cc
  ON cc.organization_id = m.organization_id AND cc.member_id = m.id AND cc.status = 'valid'
WHERE m.organization_id = $1 AND m.id = $2 AND m.is_active AND m.role IN ('closer', 'admin')
FOR UPDATE OF m"""

CONFLICT = """
SELECT EXISTS (
    SELECT 1 FROM calls
    WHERE organization_id = $1 AND closer_id = $2 AND id <> $3 AND status <> 'cancelled'
      AND call_kind = 'booking'
      AND scheduled_at > $4::timestamptz - interval '1441 minutes' AND scheduled_at < $5
      AND ends_at > $4)
 OR EXISTS (
    SELECT 1 FROM busy_blocks
    WHERE organization_id = $1 AND member_id = $2 AND ends_at > $4 AND starts_at < $5)
 OR EXISTS (
    SELECT 1 FROM calendar_events
    WHERE connection_id = $6 AND call_id IS NULL AND status <> 'cancelled'
      AND ends_at > $4 AND starts_at < $5)"""

REASSIGN = """
WITH link AS (
    INSERT INTO conferencing_links (id, organization_id, call_id, token, room_url, created_at)
    VALUES ($3, $1, $2, $4, $5, $18)),
event AS (
    INSERT INTO calendar_events (id, organization_id, connection_id, call_id, title,
        description, location, starts_at, ends_at, status, created_at, updated_at)
    VALUES ($6, $1, $7, $2, $8, $9, $10, $11, $12, 'confirmed', $18, $18)),
revoked AS (
    UPDATE conferencing_links SET revoked_at = $18
    WHERE organization_id = $1 AND token = $13 AND revoked_at IS NULL),
old_event AS (
    UPDATE calendar_events SET status = 'cancelled', updated_at = $18
    WHERE id = $14 AND organization_id = $1),
call AS (
    UPDATE calls SET closer_id = $15, closer_name = $16, closer_email = $17,
        conferencing_link = $10, calendar_event_id = $6, calendar_grant_id = $7,
        override_conflict = false, sequence = sequence + 1, updated_at = $18
    WHERE id = $2),
closer AS (
    UPDATE team_members SET last_booked_at = $18, updated_at = $18
    WHERE organization_id = $1 AND id = $15),
history AS (
    INSERT INTO call_events (id, organization_id, call_id, type, actor_type, actor_id,
        before, after, created_at)
    VALUES ($19, $1, $2, 'closer_reassigned', 'api_key', $20, $21, $22, $18)),
outbox AS (
    INSERT INTO webhook_events (id, organization_id, type, payload, created_at)
    VALUES ($23, $1, 'call.closer_reassigned', $24, $18))
INSERT INTO webhook_deliveries (id, organization_id, subscription_id, event_id, event_type,
    status, attempt_count, next_attempt_at, last_error, created_at, updated_at)
SELECT $25 || (row_number() OVER ())::text, $1, s.id, $23, 'call.closer_reassigned',
       CASE WHEN s.is_active THEN 'pending' ELSE 'failed' END, 0, $18,
       CASE WHEN s.is_active THEN NULL ELSE 'subscription disabled' END, $18, $18
FROM webhook_subscriptions s
WHERE s.organization_id = $1 AND (s.event_types ? '*' OR s.event_types ? 'call.closer_reassigned')
"""


def new_id(prefix: str) -> str:
    """``<prefix>_<26 characters>``: time-ordered hexadecimal (Crockford digits)."""
    return f"{prefix}_{time.time_ns():016X}{secrets.token_hex(5).upper()}"


def isoformat_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# The JSON columns go out in the key order of their response models (jsonb stores keys in its
# own order); a missing key is null, as the models' defaults make it.
ITEM_KEYS = {
    "action_items": ("title", "owner", "due_at", "notes"),
    "form_data": ("field_id", "label", "value"),
}
TRANSCRIPT_KEYS = ("duration_seconds", "language", "segments")
SEGMENT_KEYS = ("start_seconds", "end_seconds", "speaker", "text")


def ordered(value: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out = {key: value.get(key) for key in keys}
    out.update((key, item) for key, item in value.items() if key not in out)
    return out


def shaped(name: str, value: Any) -> Any:
    if name in ITEM_KEYS:
        return [ordered(item, ITEM_KEYS[name]) for item in value]
    transcript = ordered(value, TRANSCRIPT_KEYS)
    transcript["segments"] = [ordered(s, SEGMENT_KEYS) for s in transcript["segments"] or []]
    return transcript


TIME_FIELDS = (
    "scheduled_at", "started_at", "ended_at", "guest_rsvp_confirmed_at", "created_at",
    "updated_at", "cancelled_at", "confirmed_at", "declined_at",
)  # fmt: skip


def call_object(row: asyncpg.Record) -> dict[str, Any]:
    """The call object of docs/api.md from a row of ``CALL_FIELDS`` (selected in that order)."""
    out = dict(zip(CALL_FIELDS, row.values(), strict=True))
    for name in TIME_FIELDS:
        value = out[name]
        if value is not None:
            out[name] = isoformat_z(value)
    for name in JSON_FIELDS:
        value = out[name]
        if value is not None:
            out[name] = shaped(name, json.loads(value))
    out["has_recording"] = out["recording_url"] is not None
    out["has_analysis"] = out["ai_summary"] is not None or bool(out["action_items"])
    return out


def cursor(row: asyncpg.Record) -> str:
    """The keyset cursor closerdesk gives after ``row`` (scheduled_at, id)."""
    when = row["scheduled_at"]
    first = None if when is None else {"t": when.astimezone(UTC).isoformat()}
    raw = json.dumps([first, row["id"]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class Pool:
    """``size`` connections handed out in turn. No reset query when one comes back (asyncpg's
    pool sends one): the baseline leaves no session state behind (no SET, LISTEN or lock)."""

    def __init__(self, connections: list[asyncpg.Connection]) -> None:
        self.idle: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
        for connection in connections:
            self.idle.put_nowait(connection)
        self.all = connections

    @classmethod
    async def open(cls, url: str, size: int) -> Pool:
        return cls([await asyncpg.connect(url) for _ in range(size)])

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        connection = await self.idle.get()
        try:
            yield connection
        finally:
            self.idle.put_nowait(connection)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as connection:
            return await connection.fetchrow(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as connection:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args)
            return rows

    async def close(self) -> None:
        for connection in self.all:
            await connection.close()


class Baseline:
    def __init__(self, url: str, secret_key: str, public_base_url: str, pool_size: int) -> None:
        self.url, self.secret_key = url, secret_key.encode()
        self.public_base_url, self.pool_size = public_base_url, pool_size
        self.pool: Pool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        status, body = await self.route(scope, receive)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = await Pool.open(self.url, self.pool_size)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def key_hash(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"authorization" and value.startswith(b"Bearer "):
                return hmac.new(self.secret_key, value[7:], hashlib.sha256).hexdigest()
        return ""

    async def route(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        path: str = scope["path"]
        parts = path.strip("/").split("/")
        if scope["method"] == "GET" and path == "/v1/calls":
            return await self.list_calls(scope)
        if scope["method"] == "GET" and len(parts) == 3 and parts[:2] == ["v1", "calls"]:
            return await self.get_call(scope, parts[2])
        if scope["method"] == "POST" and len(parts) == 4 and parts[3] == "reassign-closer":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            return await self.reassign(scope, parts[2], json.loads(body)["new_closer_id"])
        return 404, b'{"success":false}'

    async def get_call(self, scope: Scope, call_id: str) -> tuple[int, bytes]:
        assert self.pool is not None
        row = await self.pool.fetchrow(GET_CALL, self.key_hash(scope), call_id)
        if row is None:
            return 404, b'{"success":false}'
        return 200, dumps({"success": True, "data": call_object(row)})

    async def list_calls(self, scope: Scope) -> tuple[int, bytes]:
        assert self.pool is not None
        query = parse_qs(scope["query_string"].decode())
        limit = int(query.get("limit", ["50"])[0])
        closer_id = query["closer_id"][0]
        rows = await self.pool.fetch(LIST_CALLS, self.key_hash(scope), closer_id, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        page = {"next_cursor": cursor(rows[-1]) if more else None, "has_more": more}
        data = [call_object(r) for r in rows]
        return 200, dumps({"success": True, "data": data, "pagination": page})

    async def reassign(self, scope: Scope, call_id: str, closer_id: str) -> tuple[int, bytes]:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():
            call = await conn.fetchrow(LOCK_CALL, self.key_hash(scope), call_id)
            if call is None:
                return 404, b'{"success":false}'
            org = call["organization_id"]
            closer = await conn.fetchrow(LOCK_CLOSER, org, closer_id)
            if closer is None or call["closer_id"] == closer_id:
                return 409, b'{"success":false}'
            start, end = call["scheduled_at"], call["ends_at"]
            busy = await conn.fetchval(
                CONFLICT, org, closer_id, call_id, start, end, closer["connection_id"]
            )
            if busy:
                return 409, b'{"success":false}'
            result = await self.write_reassign(conn, call, closer)
        return 200, dumps({"success": True, "data": result})

    async def write_reassign(
        self, conn: asyncpg.Connection, call: asyncpg.Record, closer: asyncpg.Record
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        token = secrets.token_urlsafe(18)
        link = f"{self.public_base_url}/meet/{token}"
        event_id = new_id("evt")
        old_token = (call["conferencing_link"] or "").rpartition("/meet/")[2]
        who = call["full_name"] or call["email"]
        before = {
            "closer_id": call["closer_id"],
            "closer_name": call["closer_name"],
            "calendar_event_id": call["calendar_event_id"],
            "conferencing_link": call["conferencing_link"],
        }
        after = {
            "closer_id": closer["id"],
            "closer_name": closer["name"],
            "closer_email": closer["email"],
            "calendar_event_id": event_id,
            "conferencing_link": link,
        }
        result = {
            "call_id": call["id"],
            "conferencing_link": link,
            "new_closer_id": closer["id"],
            "new_closer_name": closer["name"],
            "new_event_id": event_id,
            "old_event_orphaned": False,
            "previous_closer_id": call["closer_id"],
            "previous_closer_name": call["closer_name"],
        }
        message_id = new_id("msg")
        payload = {
            "id": message_id,
            "event": "call.closer_reassigned",
            "created_at": isoformat_z(now),
            "organization_id": call["organization_id"],
            "data": {
                **result,
                "scheduled_at": isoformat_z(call["scheduled_at"]),
                "duration_minutes": call["duration_minutes"],
                "time_zone": call["time_zone"],
                "lead": {
                    "email": call["email"],
                    "full_name": call["full_name"],
                    "phone": call["phone"],
                    "time_zone": call["lead_zone"],
                },
                "reassigned_by": {"type": "api_key", "id": call["key_id"]},
                "call": {**before, **after},
            },
        }
        await conn.execute(
            REASSIGN,
            call["organization_id"], call["id"], new_id("conf"), token,
            f"https://meet.jit.si/closerdesk-{secrets.token_hex(8)}", event_id,
            closer["connection_id"], f"{who} and {closer['name']}", f"Join: {link}", link,
            call["scheduled_at"], call["ends_at"], old_token, call["calendar_event_id"],
            closer["id"], closer["name"], closer["email"], now, new_id("cev"), call["key_id"],
            json.dumps(before), json.dumps(after), message_id, json.dumps(payload), new_id("dlv"),
        )  # fmt: skip
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--url", required=True, help="plain postgresql:// URL")
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--public-base-url", required=True)
    parser.add_argument("--pool-size", type=int, default=10, help="closerdesk's pool_size")
    args = parser.parse_args()
    app = Baseline(args.url, args.secret_key, args.public_base_url, args.pool_size)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()

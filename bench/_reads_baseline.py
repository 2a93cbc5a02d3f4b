"""The baseline of ``bench/reads.py``: a bare ASGI app over a raw asyncpg pool.

One query per request (no authentication, no framework), rows dumped with ``json.dumps``: the
floor that closerdesk's read paths are compared with. ``BENCH_DSN`` and ``BENCH_ORG`` come from
the environment.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import asyncpg  # type: ignore[import-untyped]

_pool: Any = None
_GET = "SELECT * FROM calls WHERE organization_id = $1 AND id = $2"
_LIST = (
    "SELECT * FROM calls WHERE organization_id = $1 AND closer_id = $2 "
    "ORDER BY scheduled_at NULLS LAST, id LIMIT $3"
)


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError


def _row(record: Any) -> dict[str, Any]:
    row = dict(record)
    for key in ("action_items", "form_data", "transcript_data"):
        if isinstance(row[key], str):
            row[key] = json.loads(row[key])
    return row


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=4, max_size=8)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    org = os.environ["BENCH_ORG"]
    path: str = scope["path"]
    if path == "/v1/calls":
        query = parse_qs(scope["query_string"].decode())
        limit = int(query.get("limit", ["50"])[0])
        records = await _pool.fetch(_LIST, org, query["closer_id"][0], limit + 1)
        body: dict[str, Any] = {
            "success": True,
            "data": [_row(r) for r in records[:limit]],
            "pagination": {"next_cursor": None, "has_more": len(records) > limit},
        }
    else:
        record = await _pool.fetchrow(_GET, org, path.rsplit("/", 1)[1])
        body = {"success": True, "data": _row(record)}
    payload = json.dumps(body, default=_default).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})

"""``serve --demo`` (README): the demo organization loads, and every ``curl`` line it prints
works as pasted, in the order printed (each line is parsed back into its request and sent to
the app)."""

from __future__ import annotations

import json
import shlex

import httpx

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.demo import curl_lines, load_demo
from closerdesk.providers import Providers

BASE = "http://test"


def request_of(command: str) -> tuple[str, str, dict[str, str], object | None]:
    """(method, url, headers, json body) of one printed ``curl`` line."""
    words = shlex.split(command)
    assert words[:2] == ["curl", "-s"], command
    method, url, headers, body = "GET", "", {}, None
    rest = iter(words[2:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(": ")
            headers[name] = value
        elif word == "-d":
            body = json.loads(next(rest))
        else:
            url = word
    return method, url, headers, body


async def test_every_printed_curl_line_works_as_pasted(
    client: httpx.AsyncClient, database: Database, settings: Settings, providers: Providers
) -> None:
    demo = await load_demo(database, settings, providers)
    lines = curl_lines(demo, BASE)
    assert len(lines) >= 14
    for title, command in lines:
        method, url, headers, body = request_of(command)
        assert url.startswith(BASE), command
        answer = await client.request(method, url, headers=headers, json=body)
        assert answer.is_success, (title, answer.status_code, answer.text)
        assert answer.json()["success"] is True, title


async def test_loading_it_again_replaces_the_demo_organization(
    client: httpx.AsyncClient, database: Database, settings: Settings, providers: Providers
) -> None:
    first = await load_demo(database, settings, providers)
    second = await load_demo(database, settings, providers)
    assert first.organization_id != second.organization_id
    old = await client.get("/v1/calls", headers={"Authorization": f"Bearer {first.api_key}"})
    assert old.status_code == 401
    new = await client.get("/v1/calls", headers={"Authorization": f"Bearer {second.api_key}"})
    assert new.status_code == 200
    calls = new.json()["data"]
    assert len(calls) == 6
    assert [c["status"] for c in calls].count("pending") == 1

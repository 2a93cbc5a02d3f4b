"""Fuzzing (hypothesis) of what a client controls byte for byte: the pagination cursor and the
JSON of request bodies. No input may answer 5xx; a refusal is a 400 envelope."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from closerdesk.errors import ValidationFailed
from closerdesk.kit.pagination import decode_cursor, encode_cursor
from tests.factories import Org

T = TypeVar("T")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text a forger may send: lone surrogates, NUL and other controls, astral characters.
any_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs", "Cc"])), max_size=20)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
)
times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat()),  # naive
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-13-01"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, any_text, times.map(lambda t: {"t": t})),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _json_text(value: Any) -> str:
    # ensure_ascii: surrogates travel as \udc80 escapes; allow_nan: NaN, Infinity as bare words.
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


cursors = st.one_of(
    any_text,
    st.binary(max_size=300).map(_b64),
    json_values.map(lambda v: _b64(_json_text(v).encode())),
    st.lists(json_values, min_size=1, max_size=3).map(lambda v: _b64(_json_text(v).encode())),
)


@FUZZ
@given(cursor=cursors, width=st.integers(min_value=1, max_value=3))
@example(cursor="W251bGxd", width=1)  # [null]
@example(cursor=_b64(b'["\\udc80"]'), width=1)
@example(cursor=_b64(b'["a\\u0000"]'), width=1)
@example(cursor=_b64(b'[{"t":"0001-01-01T00:00:00+14:00"},"x"]'), width=2)
@example(cursor=_b64(b"[NaN]"), width=1)
def test_decode_cursor_answers_values_or_a_400(cursor: str, width: int) -> None:
    try:
        values = decode_cursor(cursor, width)
    except ValidationFailed:  # a 400 VALIDATION_ERROR, field ``cursor``
        return
    assert len(values) == width
    assert values[-1] is not None  # the last key is the unique id (``id > NULL`` is no SQL)
    for value in values:
        assert value is None or isinstance(value, str | datetime)
        if isinstance(value, str):
            assert "\x00" not in value
            value.encode("utf-8")
        if isinstance(value, datetime):
            assert value.tzinfo is not None
            assert datetime(1900, 1, 1, tzinfo=UTC) <= value < datetime(9000, 1, 1, tzinfo=UTC)


@FUZZ
@given(
    values=st.lists(
        st.one_of(
            st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
            st.datetimes(
                min_value=datetime(1900, 1, 2),
                max_value=datetime(8999, 12, 31),
                timezones=st.just(UTC),
            ),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_every_cursor_we_make_decodes_to_its_values(values: list[object]) -> None:
    assert decode_cursor(encode_cursor(values), len(values)) == values


def _in_thread(client: httpx.AsyncClient) -> Callable[[Awaitable[T]], T]:
    """Hypothesis drives sync code: run its body in a thread and each request on our loop."""
    loop = asyncio.get_running_loop()

    def call(coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()  # type: ignore[arg-type]

    return call


@pytest.mark.parametrize("path", ["/v1/leads", "/v1/calls", "/v1/webhooks"])
async def test_no_cursor_answers_5xx(client: httpx.AsyncClient, org: Org, path: str) -> None:
    call = _in_thread(client)

    @FUZZ
    @given(cursor=cursors)
    def probe(cursor: str) -> None:
        # Sent as a client can send it: UTF-8, percent-encoded. A lone surrogate has no UTF-8
        # form, so it goes as the bytes it would be ("surrogatepass"): invalid UTF-8 on arrival.
        raw = quote(cursor.encode("utf-8", "surrogatepass"), safe="")
        r = call(client.get(f"{path}?cursor={raw}", headers=org.headers))
        assert r.status_code in {200, 400}, (cursor, r.text)
        if r.status_code == 400:
            assert r.json()["code"] == "VALIDATION_ERROR"

    await asyncio.to_thread(probe)


@pytest.mark.parametrize("path", ["/v1/leads", "/v1/calls", "/v1/webhooks"])
async def test_a_cursor_that_is_not_utf8_is_a_400(
    client: httpx.AsyncClient, org: Org, path: str
) -> None:
    # %ED%A0%80: a lone surrogate (U+D800) as "surrogatepass" bytes, invalid UTF-8.
    r = await client.get(f"{path}?cursor=%ED%A0%80", headers=org.headers)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"


# Bodies: free JSON where the API takes it, and raw bytes that may not be JSON at all.
lead_bodies = json_values.map(lambda v: {"email": "fuzz@example.com", "metadata": {"v": v}})
call_bodies = st.tuples(json_values, json_values).map(
    lambda pair: {
        "call_kind": "intent",
        "lead": {"email": "fuzz@example.com"},
        "form_data": [{"field_id": "f", "value": pair[0], "extra": pair[1]}],
    }
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=20_000).map(lambda n: "[" * n + "]" * n),
    st.sampled_from(['{"email": "a@b.co", "metadata": {"x": 1e999}}', "NaN", "-Infinity", "{}"]),
)


@pytest.mark.parametrize(
    ("path", "bodies"),
    [
        ("/v1/leads", lead_bodies.map(_json_text)),
        ("/v1/calls", call_bodies.map(_json_text)),
        ("/v1/leads", raw_bodies),
    ],
    ids=["lead-metadata", "call-form-data", "raw"],
)
async def test_no_json_body_answers_5xx(
    client: httpx.AsyncClient, org: Org, path: str, bodies: st.SearchStrategy[str | bytes]
) -> None:
    call = _in_thread(client)
    headers = {**org.headers, "Content-Type": "application/json"}

    @FUZZ
    @given(body=bodies)
    def probe(body: str | bytes) -> None:
        r = call(client.post(path, headers=headers, content=body))
        assert r.status_code < 500, (body, r.text)
        if r.status_code >= 400:
            assert r.json()["success"] is False

    await asyncio.to_thread(probe)

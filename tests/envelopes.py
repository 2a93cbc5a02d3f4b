"""Reading the API's envelopes in tests (docs/api.md, "Errors"): ``ok`` for a success, ``error``
for a refusal, each checking the status and the envelope's shape first."""

from __future__ import annotations

from typing import Any

import httpx


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The ``data`` of a success envelope, after checking status and envelope shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True, body
    return body["data"]


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error envelope, after checking status, code, a message, and ``requestId`` ==
    ``X-Request-Id``."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is False, body
    assert body["code"] == code, body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert body["requestId"].startswith("req_"), body
    assert response.headers["X-Request-Id"] == body["requestId"]
    return body

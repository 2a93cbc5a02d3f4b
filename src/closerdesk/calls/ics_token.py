"""The signed tokens of the public ``/ics/{token}`` links (``docs/links.md``, "The calendar
file").

A token is ``{call_id}.{mac}``: ``mac`` is the unpadded url-safe base64 of
HMAC-SHA256(``CLOSERDESK_SECRET_KEY``, purpose + call id), 256 bits, so a token cannot be
guessed or forged from a call id. Nothing is stored: the token names the call, and the file is
rendered from the call as it is now, so it follows every reschedule, reassign and cancel.
Changing the secret key invalidates every link at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

PURPOSE = b"closerdesk ics link v1\x00"
"""Domain separation: the same secret key signs other things (API keys, OAuth state)."""

_CALL_ID = re.compile(r"call_[0-9A-Za-z]{1,40}")


def _mac(secret_key: str, call_id: str) -> str:
    digest = hmac.new(secret_key.encode(), PURPOSE + call_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def ics_token(secret_key: str, call_id: str) -> str:
    """The token of the call's calendar file (ASCII, url-safe, 49 + len(call_id) characters)."""
    return f"{call_id}.{_mac(secret_key, call_id)}"


def ics_url(public_base_url: str, secret_key: str, call_id: str) -> str:
    """``{public_base_url}/ics/{token}``: the link handed to the lead."""
    return f"{public_base_url.rstrip('/')}/ics/{ics_token(secret_key, call_id)}"


def call_id_of(secret_key: str, token: str) -> str | None:
    """The call id a token was signed for, or None when it is malformed or its signature does
    not match (compared in constant time)."""
    call_id, sep, mac = token.rpartition(".")
    if not sep or _CALL_ID.fullmatch(call_id) is None or not mac.isascii():
        return None
    if not hmac.compare_digest(mac.encode(), _mac(secret_key, call_id).encode()):
        return None
    return call_id

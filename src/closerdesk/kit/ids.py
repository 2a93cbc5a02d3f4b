"""Public identifiers: ``<prefix>_<26 characters>``, sortable by creation time.

The 26 characters are a ULID in Crockford base32 (48-bit millisecond timestamp, 80 random
bits), made monotonic within a process, so ordering rows by ``id`` is ordering them by creation.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "".join(reversed(chars))


def ulid() -> str:
    """A 26-character monotonic ULID."""
    global _last_ms, _last_random
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            now_ms = _last_ms
            _last_random += 1
        else:
            _last_ms = now_ms
            _last_random = secrets.randbits(79)  # leaves headroom for increments
        return _encode(now_ms, 10) + _encode(_last_random, 16)


def new_id(prefix: str) -> str:
    """``new_id("call")`` → ``"call_01JD…"``; every prefix matches ``^[a-z]+$``."""
    return f"{prefix}_{ulid()}"

"""Secrets at rest: webhook signing secrets and calendar credentials, encrypted with Fernet.

``SecretBox`` wraps ``cryptography``'s ``MultiFernet`` over ``CLOSERDESK_ENCRYPTION_KEYS``:
the first key encrypts, every key decrypts. Keys rotate without downtime: put the new key
first and keep the old one second, run ``closerdesk keys rotate`` (everything stored is
re-encrypted under the new key), then drop the old one.

A Fernet token is url-safe base64 text (AES-128-CBC + HMAC-SHA256, with its creation time);
the format is public ("Fernet spec", github.com/fernet/spec), so any Fernet implementation
can open what closerdesk stored, given the key.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from fastapi import Depends, Request
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.config import Settings

KEYS_VARIABLE = "CLOSERDESK_ENCRYPTION_KEYS"


class InvalidEncryptionKeys(ValueError):
    """``CLOSERDESK_ENCRYPTION_KEYS`` is empty or holds text that is not a Fernet key."""


class UndecryptableSecret(Exception):
    """A stored token that no configured key opens (or that is not a Fernet token at all)."""

    def __init__(self, what: str = "a stored secret") -> None:
        super().__init__(
            f"{what} cannot be decrypted with any key in {KEYS_VARIABLE}; "
            "add the key it was encrypted with (after the first one)"
        )


def generate_key() -> str:
    """A fresh random Fernet key (32 bytes, url-safe base64): a value for the setting."""
    return Fernet.generate_key().decode()


def parse_keys(keys: Sequence[str]) -> list[Fernet]:
    """One ``Fernet`` per key, in order. Raises ``InvalidEncryptionKeys`` naming the setting
    and the position of a bad key (never the key itself: it would end up in logs)."""
    if not keys:
        raise InvalidEncryptionKeys(
            f"{KEYS_VARIABLE} is empty; set it to one or more comma-separated Fernet keys "
            "(`closerdesk keys generate` prints one)"
        )
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.strip()))
        except (ValueError, binascii.Error):
            raise InvalidEncryptionKeys(
                f"{KEYS_VARIABLE}: key {position} of {len(keys)} is not a Fernet key "
                "(32 bytes in url-safe base64, 44 characters); "
                "`closerdesk keys generate` prints a valid one"
            ) from None
    return fernets


class SecretBox:
    """Encrypts and decrypts short secrets (``str``) and credential maps (JSON objects).

    Tokens are ``str`` (url-safe base64, about 1.4 × the clear text + 100 characters), stored
    in ``Text`` columns. Thread-safe and cheap to share: build one per process
    (``secret_box(settings)``).
    """

    def __init__(self, keys: Sequence[str]) -> None:
        """Raises ``InvalidEncryptionKeys`` when ``keys`` is empty or one is not a Fernet key."""
        fernets = parse_keys(keys)
        self._primary = fernets[0]
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)
        # The dispatcher opens the same few signing secrets for every delivery it claims;
        # a decryption costs ~35 µs, a cache hit well under 1 µs. Tokens are immutable and this
        # box's keys never change, so an entry can never go stale.
        self._open = lru_cache(maxsize=4096)(self._open_uncached)

    def _open_uncached(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()

    def encrypt(self, clear: str) -> str:
        """A Fernet token of ``clear`` under the first key."""
        return self._fernet.encrypt(clear.encode()).decode()

    def decrypt(self, token: str, *, what: str = "a stored secret") -> str:
        """The clear text of ``token``, whichever configured key made it.

        Raises ``UndecryptableSecret`` (its message starting with ``what``) when no key opens
        it: a key since removed, or not a token at all."""
        try:
            return self._open(token)
        except InvalidToken:
            raise UndecryptableSecret(what) from None

    def encrypt_json(self, values: Mapping[str, str]) -> str:
        """A Fernet token of ``values`` as compact JSON."""
        return self.encrypt(json.dumps(dict(values), separators=(",", ":"), sort_keys=True))

    def decrypt_json(self, token: str) -> dict[str, str]:
        """The map ``encrypt_json`` sealed. Raises ``UndecryptableSecret`` as ``decrypt`` does,
        and when the clear text is not a JSON object of strings."""
        try:
            values = json.loads(self.decrypt(token, what="a stored credential map"))
        except json.JSONDecodeError:
            raise UndecryptableSecret("a stored credential map (not JSON)") from None
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise UndecryptableSecret("a stored credential map (not an object of strings)")
        return values

    def decrypt_recent_json(self, token: str, *, max_age_seconds: int) -> dict[str, str]:
        """The map ``encrypt_json`` sealed at most ``max_age_seconds`` ago (Fernet's own
        timestamp; for short-lived tokens such as an OAuth ``state``). Raises
        ``UndecryptableSecret`` when no key opens it, it is older, or it is not such a map."""
        try:
            clear = self._fernet.decrypt(token.encode(), ttl=max_age_seconds).decode()
            values = json.loads(clear)
        except (InvalidToken, json.JSONDecodeError, UnicodeError):
            raise UndecryptableSecret("a sealed token (forged, damaged or expired)") from None
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise UndecryptableSecret("a sealed token (not an object of strings)")
        return values

    def is_current(self, token: str) -> bool:
        """Whether ``token`` was made with the first key (``rotate`` would change nothing)."""
        try:
            self._primary.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted under the first key (its creation time kept).

        Raises ``UndecryptableSecret`` when no configured key opens it."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret() from None


def secret_box(settings: Settings) -> SecretBox:
    """The box for ``settings``' keys, built once per distinct key list.

    Raises ``InvalidEncryptionKeys`` (a ``ValueError``) with a sentence naming the setting."""
    return _box(tuple(settings.encryption_key_list))


@lru_cache(maxsize=8)
def _box(keys: tuple[str, ...]) -> SecretBox:
    return SecretBox(keys)


@dataclass(frozen=True)
class Resealed:
    """What a re-encryption pass did: ``resealed`` tokens moved to the first key,
    ``current`` ones already under it (left as they were)."""

    resealed: int = 0
    current: int = 0

    def __add__(self, other: Resealed) -> Resealed:
        return Resealed(self.resealed + other.resealed, self.current + other.current)


async def reseal_column(
    session: AsyncSession, box: SecretBox, model: type[Any], column: str, what: str
) -> Resealed:
    """Re-encrypt under the first key every token of ``model.column`` made with another key.

    Each row is written only if it still holds the token read (compare-and-set), so a secret
    changed meanwhile (a webhook secret rotated through the API) is never overwritten; that
    row is already current. Raises ``UndecryptableSecret`` naming ``what`` and the row id when
    no key opens a token (the caller rolls back: nothing half done)."""
    attribute = getattr(model, column)
    rows = (await session.execute(select(model.id, attribute).where(attribute.is_not(None)))).all()
    resealed = current = 0
    for row_id, token in rows:
        if box.is_current(token):
            current += 1
            continue
        try:
            fresh = box.rotate(token)
        except UndecryptableSecret:
            raise UndecryptableSecret(f"{what} of {row_id}") from None
        result = await session.execute(
            update(model)
            .where(model.id == row_id, attribute == token)
            .values({column: fresh})
            .execution_options(synchronize_session=False)
        )
        if int(getattr(result, "rowcount", 0) or 0):
            resealed += 1
        else:
            current += 1
    return Resealed(resealed, current)


def get_secret_box(request: Request) -> SecretBox:
    """The app's box (``app.state.secret_box``, built by ``create_app``)."""
    box: SecretBox = request.app.state.secret_box
    return box


Box = Annotated[SecretBox, Depends(get_secret_box)]
"""Endpoint dependency: the process's ``SecretBox``."""

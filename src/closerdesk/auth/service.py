"""API keys: ``cdk_<random>``, shown once, stored as HMAC-SHA256 under the secret key.

Scopes are ordered: ``admin`` ⊇ ``write`` ⊇ ``read``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from closerdesk.kit.ids import new_id
from closerdesk.kit.time import utcnow
from closerdesk.models import ApiKey, Organization

Scope = Literal["read", "write", "admin"]
SCOPE_RANK: dict[str, int] = {"read": 1, "write": 2, "admin": 3}
KEY_PREFIX = "cdk_"


@dataclass(frozen=True)
class AuthContext:
    """Who is calling: the key's organization, id and scope."""

    organization_id: str
    api_key_id: str
    scope: str

    def allows(self, needed: Scope) -> bool:
        return SCOPE_RANK[self.scope] >= SCOPE_RANK[needed]


def hash_key(secret_key: str, api_key: str) -> str:
    return hmac.new(secret_key.encode(), api_key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    id: str
    organization_id: str
    scope: str
    api_key: str  # the only time the secret exists in clear


async def issue_key(
    session: AsyncSession, *, secret_key: str, organization_id: str, scope: Scope, name: str = ""
) -> IssuedKey:
    """Create a key; the clear text is returned once and never stored."""
    clear = KEY_PREFIX + secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
    row = ApiKey(
        id=new_id("key"),
        organization_id=organization_id,
        name=name,
        scope=scope,
        key_hash=hash_key(secret_key, clear),
        key_prefix=clear[:12],
    )
    session.add(row)
    await session.flush()
    return IssuedKey(row.id, organization_id, scope, clear)


class KeyCache:
    """Live keys this process has looked up, by HMAC digest (never the clear key), each
    trusted for ``seconds`` (docs/api.md, "Authentication").

    Only live keys are kept: an unknown or revoked key is looked up every time, so a new key
    works at once. A key revoked by ``revoke_key`` with this cache is forgotten at once; one
    revoked by another process (``closerdesk apikey revoke``) stops working within ``seconds``.
    At most ``max_keys`` entries (the oldest go first). ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        seconds: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.max_keys = max_keys
        self.clock = clock
        self._entries: dict[str, tuple[float, AuthContext]] = {}

    def get(self, digest: str) -> AuthContext | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._entries.pop(digest, None)
            return None
        return entry[1]

    def put(self, digest: str, context: AuthContext) -> None:
        if self.seconds <= 0:
            return
        if len(self._entries) >= self.max_keys:
            self._entries.pop(next(iter(self._entries)))
        self._entries[digest] = (self.clock() + self.seconds, context)

    def clear(self) -> None:
        self._entries.clear()

    def forget(self, key_id: str) -> None:
        """Drop the key ``key_id`` (revoked in this process)."""
        for digest, (_, context) in list(self._entries.items()):
            if context.api_key_id == key_id:
                del self._entries[digest]


async def revoke_key(session: AsyncSession, key_id: str, *, cache: KeyCache | None = None) -> bool:
    """Revoke by id; False if there is no such live key. ``cache`` (this process's) forgets
    the key at once, and again after the commit (a request between the two would have cached
    the key while the revocation was not yet visible)."""
    row = await session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    await session.flush()
    if cache is not None:
        cache.forget(key_id)
        event.listen(
            session.sync_session, "after_commit", lambda _s: cache.forget(key_id), once=True
        )
    return True


def cached_context(cache: KeyCache, *, secret_key: str, api_key: str) -> AuthContext | None:
    """The context of a live key this process looked up less than ``cache.seconds`` ago, else
    None (then ``authenticate`` asks the database). No session is needed for it."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
        return None
    return cache.get(hash_key(secret_key, api_key))


async def authenticate(
    session: AsyncSession, *, secret_key: str, api_key: str, cache: KeyCache | None = None
) -> AuthContext | None:
    """The context of a live key, or None for an unknown or revoked one. With ``cache``, a key
    looked up less than ``cache.seconds`` ago is answered without the database."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
        return None
    digest = hash_key(secret_key, api_key)
    if cache is not None:
        cached = cache.get(digest)
        if cached is not None:
            return cached
    row = (
        await session.execute(
            select(ApiKey.organization_id, ApiKey.id, ApiKey.scope, ApiKey.revoked_at).where(
                ApiKey.key_hash == digest
            )
        )
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    context = AuthContext(row.organization_id, row.id, row.scope)
    if cache is not None:
        cache.put(digest, context)
    return context


async def create_organization(
    session: AsyncSession, *, secret_key: str, name: str, is_demo: bool = False
) -> tuple[Organization, IssuedKey]:
    """A new organization with one admin key."""
    org = Organization(id=new_id("org"), name=name, is_demo=is_demo)
    session.add(org)
    await session.flush()
    key = await issue_key(
        session, secret_key=secret_key, organization_id=org.id, scope="admin", name="admin"
    )
    return org, key

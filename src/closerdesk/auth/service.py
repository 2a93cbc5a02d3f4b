"""API keys: ``cdk_<random>``, shown once, stored as HMAC-SHA256 under the secret key.

Scopes are ordered: ``admin`` ⊇ ``write`` ⊇ ``read``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
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


async def revoke_key(session: AsyncSession, key_id: str) -> bool:
    """Revoke by id; False if there is no such live key."""
    row = await session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    await session.flush()
    return True


async def authenticate(
    session: AsyncSession, *, secret_key: str, api_key: str
) -> AuthContext | None:
    """The context of a live key, or None for an unknown or revoked one."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
        return None
    digest = hash_key(secret_key, api_key)
    row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or row.revoked_at is not None:
        return None
    return AuthContext(row.organization_id, row.id, row.scope)


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

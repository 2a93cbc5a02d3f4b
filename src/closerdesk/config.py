"""Settings, read from ``CLOSERDESK_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import math
import string
from enum import StrEnum
from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from closerdesk.kit.rate_limits import parse_limit

DEFAULT_SECRET_KEY = "closerdesk-development-secret-change-me"  # noqa: S105 - the known default
DEFAULT_ENCRYPTION_KEY = "Y2xvc2VyZGVzayBkZXZlbG9wbWVudCBrZXk6IG9wZW4="
"""The development Fernet key: the url-safe base64 of ``closerdesk development key: open``.

Public on purpose (anyone can decrypt what it encrypted), so production refuses it."""


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """Every knob of a closerdesk process.

    ``CLOSERDESK_DATABASE_URL`` selects the database: the embedded SQLite file by default,
    ``postgresql+asyncpg://…`` in production.
    """

    model_config = SettingsConfigDict(env_prefix="CLOSERDESK_", env_file=None, extra="ignore")

    env: Environment = Environment.development
    database_url: str = "sqlite+aiosqlite:///./closerdesk.db"
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEFAULT_SECRET_KEY
    jitsi_base_url: str = "https://meet.jit.si"
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    webhook_allow_private_targets: bool = False
    encryption_keys: SecretStr = Field(
        default=SecretStr(DEFAULT_ENCRYPTION_KEY),
        description=(
            "Comma-separated Fernet keys for secrets at rest (webhook signing secrets, calendar "
            "credentials): the first encrypts, every one decrypts, so a new key goes first and "
            "the old one stays second until `closerdesk keys rotate` has run."
        ),
    )
    webhook_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    """How long a dispatcher owns a claimed delivery; a crashed one's deliveries are taken
    again after it. Keep it above the 15 s attempt timeout."""
    webhook_sweep_seconds: float = Field(default=30.0, gt=0, le=3600)
    """On PostgreSQL, an idle dispatcher is woken by ``NOTIFY`` and otherwise looks for due
    deliveries only this often (seconds): retries scheduled by other workers, leases run out,
    notifications lost while its listening connection was down."""
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    """How often an idle dispatcher looks for due deliveries on SQLite (commits in its own
    process wake it at once), and on PostgreSQL while its listening connection is down."""
    calendar_sync_seconds: float = Field(default=300.0, ge=5, le=86400)
    """Every external calendar's busy mirror is re-synced at least this often (seconds)."""
    calendar_mirror_days: int = Field(default=120, ge=7, le=730)
    """How far ahead the busy mirror reaches (days); slots beyond it see no calendar busy."""
    calendar_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """Bound on each request to a calendar provider (seconds); past it the request fails."""
    calendar_retry_seconds: float = Field(default=20.0, gt=0, le=300)
    """Total time a request to a cloud calendar may spend retrying 429s and 5xx (seconds); a
    ``Retry-After`` longer than what is left fails at once instead of waiting."""
    calendar_push: bool = True
    """Ask Google and Microsoft for push notifications (``/hooks/google``,
    ``/hooks/microsoft``); they need ``public_base_url`` to be reachable by the provider."""

    # OAuth clients and base URLs of the cloud calendars (docs/calendars.md). Every URL is a
    # setting so a deployment (or a test) can point it elsewhere.
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    google_api_uri: str = "https://www.googleapis.com/calendar/v3"
    google_authorization_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_uri: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    microsoft_client_id: str | None = None
    microsoft_client_secret: SecretStr | None = None
    microsoft_tenant: str = "common"
    microsoft_api_uri: str = "https://graph.microsoft.com/v1.0"
    microsoft_authorization_uri: str = (
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"
    )
    microsoft_token_uri: str = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"  # noqa: S105 - a URL
    nylas_api_key: SecretStr | None = None
    nylas_api_uri: str = "https://api.us.nylas.com"
    nylas_webhook_secret: SecretStr | None = None
    oauth_state_seconds: int = Field(default=900, ge=60, le=86400)
    """How long an ``authorization_url`` stays usable (its signed ``state``), in seconds."""
    reservation_minutes: int = Field(default=5, ge=1, le=60)
    """How long ``POST /v1/booking-links/{id}/reservations`` holds a slot (minutes,
    docs/sales-floor.md "Slot reservations"); past it the slot is offered again."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Delivered webhook deliveries (and their attempts) older than this many days are pruned
    by the worker (docs/idempotency.md, "Retention"); undelivered ones are never pruned."""

    # Database pool and read path (docs/performance.md, "Read paths").
    db_pool_size: int = Field(default=20, ge=1, le=500)
    """PostgreSQL connections each process keeps open (and at most uses, plus the overflow)."""
    db_max_overflow: int = Field(default=0, ge=0, le=500)
    """Extra PostgreSQL connections opened under load and closed again when returned: each
    costs a new connection (and its authentication) every time, hence 0 by default."""
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    """How long a process trusts an API key it has looked up (docs/api.md, "Authentication"):
    a key revoked by another process stops working within this many seconds; 0 looks every
    key up on every request."""

    # Rate limits (docs/rate-limits.md): ``limits`` strings, counted in fixed windows.
    rate_limit_per_key: str = "600/minute"
    """Requests per API key."""
    rate_limit_per_org: str = "3000/minute"
    """Requests per organization, all its keys together."""
    rate_limit_auth_failures: str = "60/minute"
    """Failed authentications (401) per client address; past it, 429 without checking keys."""
    rate_limit_per_address: str = "600/minute"
    """Requests without an API key (health, lead-facing links, callbacks) per client address."""
    redis_url: str | None = None
    """``redis://host:port/db`` (or ``rediss://``): rate-limit counters shared by every process;
    unset, each process counts in its own memory."""

    @field_validator(
        "rate_limit_per_key",
        "rate_limit_per_org",
        "rate_limit_auth_failures",
        "rate_limit_per_address",
    )
    @classmethod
    def _is_rate_limit(cls, value: str) -> str:
        parse_limit(value)  # raises ValueError naming the text
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def oauth_redirect_base(self) -> str:
        """``{public_base_url}/oauth``; providers send the browser to ``…/{provider}/callback``."""
        return f"{self.public_base_url.rstrip('/')}/oauth"

    @property
    def encryption_key_list(self) -> list[str]:
        """``CLOSERDESK_ENCRYPTION_KEYS`` split on commas, blanks dropped (first = encrypting)."""
        text = self.encryption_keys.get_secret_value()
        return [key.strip() for key in text.split(",") if key.strip()]

    def check_production_ready(self) -> None:
        """Refuse to run in production with a default secret (README, "Configuration").

        Raises ``RuntimeError`` with a sentence that names the variable to set.
        """
        if self.env is Environment.production and self.secret_key == DEFAULT_SECRET_KEY:
            raise RuntimeError(
                "CLOSERDESK_SECRET_KEY still has its default value; "
                "set a random secret before running with CLOSERDESK_ENV=production"
            )
        if self.env is Environment.production and not secret_strong_enough(self.secret_key):
            raise RuntimeError(
                "CLOSERDESK_SECRET_KEY is too weak for CLOSERDESK_ENV=production: it needs "
                f"{SECRET_KEY_BITS} bits (32 bytes) of randomness, e.g. the output of "
                "`openssl rand -hex 32`"
            )
        self.check_encryption_ready()

    def check_encryption_ready(self) -> None:
        """Refuse production without an encryption key of its own: none set, or the public
        development key among them. Raises ``RuntimeError`` naming the variable."""
        if self.env is not Environment.production:
            return
        keys = self.encryption_key_list
        if not keys or DEFAULT_ENCRYPTION_KEY in keys:
            raise RuntimeError(
                "CLOSERDESK_ENCRYPTION_KEYS must hold your own Fernet key (not the development "
                "default) to run with CLOSERDESK_ENV=production; "
                "`closerdesk keys generate` prints one"
            )


SECRET_KEY_BITS = 256
_HEX = frozenset(string.hexdigits)
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/-_=")


def secret_strong_enough(secret: str) -> bool:
    """At least 32 bytes of entropy, estimated as length × log2 of the alphabet the characters
    come from (hex 16, base64/base64url 64, anything else 95 printable ASCII), with at least 32
    characters and 10 distinct ones (``aaaa…`` is long but not random). ``openssl rand -hex
    32`` (64 characters) and ``secrets.token_urlsafe(32)`` (43) pass (docs/architecture.md,
    "Secrets")."""
    characters = set(secret)
    if len(secret) < 32 or len(characters) < 10:
        return False
    if characters <= _HEX:
        alphabet = 16
    elif characters <= _BASE64:
        alphabet = 64
    else:
        alphabet = 95
    return len(secret) * math.log2(alphabet) >= SECRET_KEY_BITS


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()

"""UTC time helpers. Every datetime inside closerdesk is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


def utcnow() -> datetime:
    """The current time, aware, UTC, to the microsecond."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Normalise an aware datetime to UTC; a naive one is read as UTC (database round trips)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat_z(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix: ``2026-01-20T15:00:00Z``."""
    text = as_utc(value).isoformat()
    return text.replace("+00:00", "Z")


_ZONES: frozenset[str] | None = None


def is_valid_time_zone(name: str) -> bool:
    """True for an IANA zone name known to tzdata (``America/New_York``, ``UTC``)."""
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    if name in _ZONES:
        return True
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return "/" in name or name == "UTC"

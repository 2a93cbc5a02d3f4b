"""Shared by the end-to-end calendar tests (CalDAV and cloud providers)."""

from __future__ import annotations

from datetime import datetime, timedelta

from closerdesk.kit.time import utcnow


def at(days: int, hour: int) -> datetime:
    """``hour``:00 UTC, ``days`` from today."""
    day = (utcnow() + timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    return day.replace(hour=hour)

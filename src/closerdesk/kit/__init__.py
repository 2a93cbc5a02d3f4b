"""Shared plumbing: ids, time, schemas, pagination."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def required(value: T | None, what: str) -> T:
    """Narrow an Optional the rules already guarantee; a None here is a bug (500), not input."""
    if value is None:
        raise RuntimeError(f"{what} is unexpectedly missing")
    return value

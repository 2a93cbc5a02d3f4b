"""The pure parts of the calendar unit of work."""

from __future__ import annotations

from datetime import timedelta

from closerdesk.calendars.unit_of_work import MAX_BACKOFF, backoff


def test_cleanup_backoff_doubles_from_a_minute_up_to_six_hours() -> None:
    minutes = [backoff(n) / timedelta(minutes=1) for n in range(0, 12)]
    assert minutes == [1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 360, 360]
    assert backoff(50) == MAX_BACKOFF == timedelta(hours=6)

"""Half-open UTC intervals ``[start, end)`` and the few operations conflict detection needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, order=True)
class Interval:
    """``[start, end)``, both aware UTC datetimes, ``start < end``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError(f"empty or inverted interval {self.start} .. {self.end}")

    def overlaps(self, other: Interval) -> bool:
        """True when the two share any instant; touching ends (10:00–11:00, 11:00–12:00) do not."""
        return self.start < other.end and other.start < self.end


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union; touching intervals are joined."""
    merged: list[Interval] = []
    for current in sorted(intervals):
        if merged and current.start <= merged[-1].end:
            last = merged[-1]
            if current.end > last.end:
                merged[-1] = Interval(last.start, current.end)
        else:
            merged.append(current)
    return merged

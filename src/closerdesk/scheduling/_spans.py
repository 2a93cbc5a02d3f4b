"""Integer spans: the fast path under availability and slot generation. No I/O.

A span is ``(start, end)`` in integer microseconds since the Unix epoch (UTC), ``start < end``,
half-open like :class:`~closerdesk.scheduling.intervals.Interval`. Sorting and sweeping plain int
tuples is several times faster than sorting ``Interval`` dataclasses, which is what keeps slot
generation linear and cheap (``bench/slots.py``). Integers are exact, so nothing is rounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from closerdesk.scheduling.intervals import Interval

Span = tuple[int, int]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
MINUTE_US = 60_000_000


def to_us(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime; a naive one raises ``ValueError``."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
    return (value - EPOCH) // _ONE_US


def from_us(value: int) -> datetime:
    """The aware UTC datetime ``value`` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=value)


def spans_of(intervals: Iterable[Interval]) -> list[Span]:
    """``Interval`` → span, order kept; ``ValueError`` for naive datetimes."""
    epoch, one = EPOCH, _ONE_US  # locals: this loop runs once per busy interval
    try:
        return [((i.start - epoch) // one, (i.end - epoch) // one) for i in intervals]
    except TypeError as exc:  # aware − naive
        raise ValueError(
            f"naive datetime in intervals: pass aware (UTC) datetimes ({exc})"
        ) from exc


def intervals_of(spans: Iterable[Span]) -> list[Interval]:
    """Span → ``Interval`` (UTC), order kept."""
    return [Interval(from_us(s), from_us(e)) for s, e in spans]


@dataclass
class SpanColumns:
    """Spans as two parallel lists, ``starts[i] < ends[i]``, any order: the shape a database
    hands back when it aggregates busy time (``closerdesk.models.base.epoch_us_list``).
    Extending and concatenating lists costs no tuple per span; the core pairs them up once."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def extend(self, starts: Sequence[int], ends: Sequence[int]) -> None:
        """Append ``zip(starts, ends)``; ``ValueError`` when their lengths differ."""
        if len(starts) != len(ends):
            raise ValueError("starts and ends differ in length")
        self.starts += starts
        self.ends += ends

    def spans(self) -> Iterator[Span]:
        """The spans, in list order."""
        return zip(self.starts, self.ends, strict=True)


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping union; touching spans are joined. O(n log n)."""
    out: list[Span] = []
    cur_s = cur_e = 0
    have = False
    for s, e in sorted(spans):
        if have and s <= cur_e:
            if e > cur_e:
                cur_e = e
        else:
            if have:
                out.append((cur_s, cur_e))
            cur_s, cur_e, have = s, e, True
    if have:
        out.append((cur_s, cur_e))
    return out


def subtract_spans(free: Sequence[Span], busy: Sequence[Span]) -> list[Span]:
    """``free − busy``; both must be merged (sorted, disjoint). Two-pointer sweep, O(n + m)."""
    out: list[Span] = []
    j = 0
    nb = len(busy)
    for fs, fe in free:
        # Busy spans ending at or before this free span cannot touch it or any later one.
        while j < nb and busy[j][1] <= fs:
            j += 1
        cur = fs
        k = j
        while k < nb and busy[k][0] < fe:
            bs, be = busy[k]
            if bs > cur:
                out.append((cur, bs))
            if be > cur:
                cur = be
            if cur >= fe:
                break
            k += 1
        if cur < fe:
            out.append((cur, fe))
    return out


def intersect_spans(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """``a ∩ b``; both must be merged (sorted, disjoint). Two-pointer sweep, O(n + m)."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s = max(a[i][0], b[j][0])
        e = min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def pad_spans(spans: Iterable[Span], before_us: int, after_us: int) -> list[Span]:
    """Each ``[s, e)`` widened to ``[s − before_us, e + after_us)``, then merged."""
    if before_us < 0 or after_us < 0:
        raise ValueError("padding must be >= 0")
    if before_us == 0 and after_us == 0:
        return merge_spans(spans)
    return merge_spans([(s - before_us, e + after_us) for s, e in spans])

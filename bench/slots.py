"""Benchmark: slots of a 20-host round-robin booking link over 30 days (issue 4, part 5).

Not a test: it prints its figures. Run from the repository root:

    .venv/bin/python bench/slots.py [--runs 60]

Each case builds 20 hosts (weekly schedules in six IANA zones, the 30 days from 2026-03-01
crossing the US, EU and Australian DST changes) with 500, 1,000 or 2,000 random busy intervals
per host (fixed seed), then times ``find_slots`` end to end — availability expansion per local
date, busy widened by the buffers, subtraction and slot generation — for SPEC §5's example link
(45 minutes every 30, 120 minutes notice, 15 minutes after-buffer). Target: p50 < 50 ms for 500
and time growing no faster than linearly with the busy count.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from closerdesk.scheduling.availability import Schedule, WeeklyWindow
from closerdesk.scheduling.intervals import Interval
from closerdesk.scheduling.slots import HostSchedule, find_slots

HOSTS = 20
DAYS = 30
START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(days=DAYS)
NOW = START - timedelta(hours=1)
BUSY_COUNTS = (500, 1000, 2000)
SEED = 4

ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Sydney",
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")
SHAPES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("09:00", "17:00"),),
    (("08:30", "12:00"), ("13:00", "18:00")),
    (("10:00", "19:00"),),
    (("07:00", "11:00"), ("14:00", "20:00")),
)


def build_hosts(busy_per_host: int, rnd: random.Random) -> list[HostSchedule]:
    """20 hosts; host ``i`` in ``ZONES[i % 6]`` with ``SHAPES[i % 4]`` on weekdays (plus a
    Saturday morning for every third host), and ``busy_per_host`` random busy intervals in the
    30 days: starts on a 5-minute grid, 15–120 minutes long."""
    hosts = []
    span_minutes = DAYS * 24 * 60
    for i in range(HOSTS):
        weekly = [
            WeeklyWindow.parse(day, start, end) for day in WEEKDAYS for start, end in SHAPES[i % 4]
        ]
        if i % 3 == 0:
            weekly.append(WeeklyWindow.parse("saturday", "09:00", "13:00"))
        busy = []
        for _ in range(busy_per_host):
            start = START + timedelta(minutes=5 * rnd.randrange(span_minutes // 5))
            busy.append(Interval(start, start + timedelta(minutes=15 * rnd.randint(1, 8))))
        hosts.append(HostSchedule(f"user_{i:02d}", Schedule(ZONES[i % 6], tuple(weekly)), busy))
    return hosts


def run_once(hosts: list[HostSchedule]) -> int:
    slots = find_slots(
        hosts,
        start_utc=START,
        end_utc=END,
        duration_minutes=45,
        slot_interval_minutes=30,
        minimum_notice_minutes=120,
        buffer_before_minutes=0,
        buffer_after_minutes=15,
        now=NOW,
    )
    return len(slots)


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, round(q / 100 * len(sorted_ms)))
    return sorted_ms[min(rank, len(sorted_ms)) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="timed runs per case (default 60)")
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()}, load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"link: {HOSTS} hosts, {DAYS} days from {START:%Y-%m-%d}, 45 min every 30, "
        f"notice 120 min, buffer after 15 min; {args.runs} timed runs per case, seed {SEED}"
    )
    cases = {count: build_hosts(count, random.Random(f"{SEED}-{count}")) for count in BUSY_COUNTS}
    slots = {count: run_once(hosts) for count, hosts in cases.items()}  # also a warm-up
    wall: dict[int, list[float]] = {count: [] for count in BUSY_COUNTS}
    cpu: dict[int, list[float]] = {count: [] for count in BUSY_COUNTS}
    # Interleave the cases, so background load on the machine hits all of them alike.
    for _ in range(args.runs):
        for count, hosts in cases.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            run_once(hosts)
            wall[count].append((time.perf_counter() - began) * 1000)
            cpu[count].append((time.process_time() - began_cpu) * 1000)
    print(
        f"{'busy/host':>9} {'busy total':>10} {'slots':>6} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'cpu p50 ms':>10} {'cpu p95 ms':>10}"
    )
    p50s: dict[int, float] = {}
    cpu_p50s: dict[int, float] = {}
    for count in BUSY_COUNTS:
        ordered, ordered_cpu = sorted(wall[count]), sorted(cpu[count])
        p50s[count] = statistics.median(ordered)
        cpu_p50s[count] = statistics.median(ordered_cpu)
        print(
            f"{count:>9} {count * HOSTS:>10} {slots[count]:>6} "
            f"{p50s[count]:>8.1f} {percentile(ordered, 95):>8.1f} "
            f"{cpu_p50s[count]:>10.1f} {percentile(ordered_cpu, 95):>10.1f}"
        )
    base = BUSY_COUNTS[0]
    for count in BUSY_COUNTS[1:]:
        print(
            f"p50 ratio {count}/{base}: {p50s[count] / p50s[base]:.2f} wall, "
            f"{cpu_p50s[count] / cpu_p50s[base]:.2f} cpu "
            f"(busy ratio {count / base:.0f}; linear growth would be {count / base:.2f})"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()

"""How fair round robin stays: the largest deviation from the weighted share over 10,000 random
bookings (docs/sales-floor.md "Round-robin controls").

Each run: 2–12 hosts of one priority with random weights 1–10,000, every host always free;
10,000 bookings through ``choose_host``; after each booking a random earlier call is cancelled
with probability ``--cancel`` (credit-back: it leaves its host's count). After every booking the
deviation ``bookings_h − share_h × T`` of every host is measured (``T``: the live calls).
Printed: the largest excess (above the share) and shortfall (below it), in bookings, over all
runs, with and without cancellations.

    python bench/fairness.py [--runs 20] [--bookings 10000] [--cancel 0.1] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from closerdesk.scheduling.round_robin import Candidate, Priority, choose_host

T0 = datetime(2027, 1, 1, tzinfo=UTC)


@dataclass
class Worst:
    excess: float = 0.0
    shortfall: float = 0.0
    final: float = 0.0


def run(rnd: random.Random, bookings: int, cancel: float, worst: Worst) -> None:
    n = rnd.randint(2, 12)
    weights = [rnd.randint(1, 10_000) for _ in range(n)]
    total_w = sum(weights)
    live: list[list[int]] = [[] for _ in range(n)]  # booking numbers per host
    last: list[datetime | None] = [None] * n
    for k in range(bookings):
        pool = [
            Candidate(f"h{i}", Priority.HIGH, weights[i], len(live[i]), last[i]) for i in range(n)
        ]
        chosen = choose_host(pool)
        assert chosen is not None
        i = int(chosen.member_id[1:])
        live[i].append(k)
        last[i] = T0 + timedelta(minutes=k)
        if cancel and rnd.random() < cancel:
            holders = [h for h in range(n) if live[h]]
            h = rnd.choice(holders)
            live[h].pop(rnd.randrange(len(live[h])))
        total = sum(len(x) for x in live)
        for j in range(n):
            dev = len(live[j]) - weights[j] * total / total_w
            worst.excess = max(worst.excess, dev)
            worst.shortfall = max(worst.shortfall, -dev)
    total = sum(len(x) for x in live)
    worst.final = max(
        worst.final, *(abs(len(live[j]) - weights[j] * total / total_w) for j in range(n))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--bookings", type=int, default=10_000)
    parser.add_argument("--cancel", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for cancel in (0.0, args.cancel):
        rnd = random.Random(args.seed)
        worst = Worst()
        for _ in range(args.runs):
            run(rnd, args.bookings, cancel, worst)
        print(
            f"{args.runs} runs × {args.bookings} bookings, cancel {cancel:.0%}: largest excess "
            f"{worst.excess:.3f}, largest shortfall {worst.shortfall:.3f} (at any time); "
            f"largest |deviation| at the end {worst.final:.3f} bookings"
        )


if __name__ == "__main__":
    main()

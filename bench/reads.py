"""Benchmark: the read paths ``GET /v1/calls/{id}`` (G1) and ``GET /v1/calls?closer_id=…&limit=100``
(G2) over real HTTP, against a bare ASGI + raw asyncpg baseline measured in the same run.

Not a test: it prints its figures. Needs PostgreSQL and ``wrk``. The database named by
``--database-url`` is migrated and, when it holds fewer calls, filled with ``--calls`` calls of
one organization (50 closers) by one ``generate_series`` insert; later runs reuse them.

Both servers run under uvicorn (one worker, pinned to one core with ``taskset``), ``wrk`` runs
pinned to the other core; rounds interleave baseline and closerdesk so that a noisy neighbour
hits both. Per target it prints requests per second, p99 latency and the server's CPU time per
request (user + system, from ``/proc/<pid>/stat``), and the ratios to the baseline.

    .venv/bin/python bench/reads.py --database-url postgresql+asyncpg://postgres@127.0.0.1/NAME \
        [--calls 100000] [--rounds 3] [--seconds 10] [--connections 8]

``--src DIR`` imports closerdesk from another checkout's ``src`` (to measure a "before").
"""

# ruff: noqa: S603, S607 - runs wrk, curl and taskset from PATH
from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from closerdesk.auth.service import hash_key
from closerdesk.config import Settings
from closerdesk.migrate import upgrade

ORG = "org_bench"
KEY = "cdk_benchreadsbenchreadsbenchreadsbenchreads"
CLOSERS = 50
HERE = Path(__file__).resolve().parent

SEED_SQL = """
INSERT INTO calls (id, organization_id, call_kind, status, lead_id, closer_id, closer_name,
    closer_email, scheduled_at, ends_at, duration_minutes, time_zone, conferencing_link,
    expected_deal_value, action_items, form_data, notes, utm_source, reschedule_count, sequence,
    override_conflict, created_at, updated_at)
SELECT 'call_' || lpad(g::text, 10, '0'), $1, 'booking', 'scheduled', 'lead_bench',
    'user_b' || (g % $3), 'Closer ' || (g % $3), 'closer' || (g % $3) || '@example.com',
    timestamptz '2026-01-01 00:00:00+00' + (g / $3) * interval '1 hour',
    timestamptz '2026-01-01 00:45:00+00' + (g / $3) * interval '1 hour',
    45, 'America/New_York', 'https://meet.example.test/' || g, 500000,
    '[{"title": "Send the contract", "owner": "closer"}]'::json,
    '[{"field_id": "budget", "label": "Budget", "value": "10k"}]'::json,
    'Notes of call ' || g, 'newsletter', 0, 0, false, now(), now()
FROM generate_series($2::int, $4::int) AS g
"""


async def seed(dsn: str, calls: int, secret_key: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await _seed(conn, calls, secret_key)
    finally:
        await conn.close()


async def _seed(conn: Any, calls: int, secret_key: str) -> None:
    if True:
        if await conn.fetchval("SELECT count(*) FROM organizations WHERE id = $1", ORG) == 0:
            await conn.execute(
                "INSERT INTO organizations (id, name, is_demo, created_at) "
                "VALUES ($1, 'bench', false, now())",
                ORG,
            )
            await conn.execute(
                "INSERT INTO api_keys (id, organization_id, name, scope, key_hash, key_prefix, "
                "created_at) VALUES ('key_bench', $1, 'bench', 'admin', $2, $3, now())",
                ORG,
                hash_key(secret_key, KEY),
                KEY[:12],
            )
            await conn.executemany(
                "INSERT INTO team_members (organization_id, id, name, email, role, time_zone, "
                "is_active, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, 'closer', 'UTC', true, now(), now())",
                [
                    (ORG, f"user_b{i}", f"Closer {i}", f"closer{i}@example.com")
                    for i in range(CLOSERS)
                ],
            )
            await conn.execute(
                "INSERT INTO leads (id, organization_id, email, full_name, status, metadata, "
                "created_at, updated_at) VALUES ('lead_bench', $1, 'lead@example.com', 'Lee', "
                "'new', '{}'::json, now(), now())",
                ORG,
            )
        have = await conn.fetchval("SELECT count(*) FROM calls WHERE organization_id = $1", ORG)
        if have < calls:
            await conn.execute(SEED_SQL, ORG, have + 1, CLOSERS, calls)
            await conn.execute("ANALYZE calls")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                f"Authorization: Bearer {KEY}",
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.stdout == "200":
            return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer 200")


def run_wrk(url: str, seconds: int, connections: int) -> tuple[float, float, int]:
    """(requests per second, p99 ms, requests) of one wrk run pinned to core 0."""
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {KEY}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99_text = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99_text is not None, out
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99_text.group(2)]
    p99 = float(p99_text.group(1)) * unit
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} non-2xx answers")
    return rps, p99, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--src", default=None, help="closerdesk's src folder to serve instead")
    args = parser.parse_args()
    url = args.database_url
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    settings = Settings(database_url=url)
    upgrade(url)
    asyncio.run(seed(dsn, args.calls, settings.secret_key))

    env = {
        **os.environ,
        "CLOSERDESK_DATABASE_URL": url,
        "CLOSERDESK_LOG_LEVEL": "WARNING",
        "CLOSERDESK_RATE_LIMIT_PER_KEY": "100000000/minute",
        "CLOSERDESK_RATE_LIMIT_PER_ORG": "100000000/minute",
        "CLOSERDESK_RATE_LIMIT_PER_ADDRESS": "100000000/minute",
        "BENCH_DSN": dsn,
        "BENCH_ORG": ORG,
    }
    if args.src:
        env["PYTHONPATH"] = args.src
    uvicorn = [sys.executable, "-m", "uvicorn", "--no-access-log", "--log-level", "warning"]
    servers = {
        "baseline": [*uvicorn, "--port", "8791", "--app-dir", str(HERE), "_reads_baseline:app"],
        "closerdesk": [
            *uvicorn,
            "--port",
            "8792",
            "--app-dir",
            str(HERE),
            "--factory",
            "_reads_app:app",
        ],
    }
    ports = {"baseline": 8791, "closerdesk": 8792}
    paths = {
        "G1 get": "/v1/calls/call_0000012345",
        "G2 list": "/v1/calls?closer_id=user_b7&limit=100",
    }
    procs = {
        name: subprocess.Popen(["taskset", "-c", "1", *cmd], env=env, stdout=subprocess.DEVNULL)
        for name, cmd in servers.items()
    }
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    try:
        for port in ports.values():
            for path in paths.values():
                wait_ready(f"http://127.0.0.1:{port}{path}")
        for port in ports.values():  # warm up: prepared statements, pools
            for path in paths.values():
                run_wrk(f"http://127.0.0.1:{port}{path}", 2, args.connections)
        for round_ in range(args.rounds):
            for label, path in paths.items():
                for name, port in ports.items():
                    pid = procs[name].pid
                    before = cpu_seconds(pid)
                    rps, p99, total = run_wrk(
                        f"http://127.0.0.1:{port}{path}", args.seconds, args.connections
                    )
                    cpu_ms = (cpu_seconds(pid) - before) * 1000 / total
                    results.setdefault((label, name), []).append((rps, p99, cpu_ms))
                    print(
                        f"round {round_ + 1} {label:<8} {name:<11} {rps:8.1f} rps  "
                        f"p99 {p99:6.2f} ms  cpu {cpu_ms:5.2f} ms/req",
                        flush=True,
                    )
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            proc.wait(timeout=15)

    print(f"\nc={args.connections}, {args.seconds} s x {args.rounds} rounds, {args.calls} calls")
    print(f"{'path':<9}{'target':<12}{'rps':>9}{'p99 ms':>9}{'cpu ms':>8}  vs baseline")
    for label in paths:
        base = [sum(v) / len(v) for v in zip(*results[(label, "baseline")], strict=True)]
        for name in ports:
            mean = [sum(v) / len(v) for v in zip(*results[(label, name)], strict=True)]
            ratio = (
                f"rps x{mean[0] / base[0]:.2f}, p99 x{mean[1] / base[1]:.2f}, "
                f"cpu x{mean[2] / base[2]:.1f}"
                if name != "baseline"
                else ""
            )
            print(f"{label:<9}{name:<12}{mean[0]:9.1f}{mean[1]:9.2f}{mean[2]:8.2f}  {ratio}")


if __name__ == "__main__":
    main()

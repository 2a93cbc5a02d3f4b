"""Benchmark: the Partner API's hot paths under load, against a bare baseline (issue 10).

Not a test: it prints one table. On the dataset of bench/dataset.py (PostgreSQL, 1,000,003
calls, 2,000 closers, 100 organizations) it serves

* closerdesk: ``closerdesk serve`` with production settings (``CLOSERDESK_ENV=production``,
  the dataset's secret and encryption keys; the rate limits raised so that no request is
  refused: the limiter still runs on every request);
* the baseline: bench/api_baseline.py, a bare ASGI app on raw asyncpg under the same uvicorn
  options, answering the same JSON bytes (checked before measuring);

each pinned to core 1 (``taskset -c 1``), the load generator on core 0. Paths:

* G1 ``GET /v1/calls/{id}`` (random calls of every organization) with wrk at 8 and 32
  connections; G2 ``GET /v1/calls?closer_id=…&limit=100`` (random closers) at 8;
* G3 ``POST /v1/calls/{id}/reassign-closer``, sequential (one request at a time from this
  process), moving one upcoming call back and forth between two closers that have 10 calls
  each, then between two that have 10,000.

Rounds are interleaved (closerdesk, baseline, closerdesk, …); the table shows medians over
the rounds, and each ratio is the median of the per-round ratios. CPU per request is the
server's own utime + stime (``/proc/<pid>/stat``, its worker processes included) over the
requests served; peak RSS is ``VmHWM``. Round trips per request are counted on the wire by
a proxy between the server and PostgreSQL (bench/pg_round_trips.py) in a separate counted
phase with fresh servers, after a warm-up.

    .venv/bin/python bench/api.py [--rounds 3] [--duration 10] [--skip-dataset] [--url URL]
        [--calls N] [--src DIR]

``--calls N`` builds a smaller dataset when there is none yet (e.g. 100,000 calls: under a
minute; its G3 "10,000" row is not meaningful, no closer there has 10,000 calls).
``--src DIR`` serves closerdesk from another checkout's ``src`` directory (its ``PYTHONPATH``),
to measure a "before" on the same dataset; the baseline is unchanged.

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install -y wrk``) and ``taskset`` (util-linux).
"""

# This script starts its own command lines only (taskset, wrk, the two servers).
# ruff: noqa: S603, S607

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from dataset import DATA_FILE, DEFAULT_URL
from pg_round_trips import RoundTripProxy

BENCH = Path(__file__).parent
VENV_BIN = Path(sys.executable).parent
CLOSERDESK_PORT, BASELINE_PORT, COUNTED_PORT = 8101, 8102, 8103
SERVER_CORE, LOAD_CORE = "1", "0"
G3_REQUESTS = 40
COUNTED_REQUESTS = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- servers ----------------------------------------------------------------------------------
@dataclass
class Server:
    """A server process pinned to ``SERVER_CORE``."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        """The server and its descendants (uvicorn's worker processes)."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                todo += [int(child) for child in task.read_text().split()]
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLK_TCK

    def peak_rss_mb(self) -> float:
        """``VmHWM`` summed over the processes, in MB."""
        total = 0
        for pid in self.pids():
            match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
            total += int(match.group(1)) if match else 0
        return total / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(name: str, command: Sequence[str], port: int, env: dict[str, str]) -> Server:
    """Start ``command`` under ``taskset`` and wait until the port answers HTTP."""
    log = Path(tempfile.gettempdir()) / f"bench_api_{name.replace(' ', '_')}_{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *command],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, port, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except httpx.TransportError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"{name} did not answer on port {port}: {log.read_text()[-2000:]}")


def closerdesk_env(data: dict[str, Any], url: str) -> dict[str, str]:
    """Production settings on the bench database; only the rate limits are raised."""
    return {
        "CLOSERDESK_ENV": "production",
        "CLOSERDESK_DATABASE_URL": url.replace("postgresql://", "postgresql+asyncpg://", 1),
        "CLOSERDESK_SECRET_KEY": data["secret_key"],
        "CLOSERDESK_ENCRYPTION_KEYS": data["encryption_key"],
        "CLOSERDESK_PUBLIC_BASE_URL": data["public_base_url"],
        "CLOSERDESK_RATE_LIMIT_PER_KEY": "10000000/minute",
        "CLOSERDESK_RATE_LIMIT_PER_ORG": "10000000/minute",
        **({"PYTHONPATH": SOURCE[0]} if SOURCE else {}),
    }


SOURCE: list[str] = []
"""``--src``: the checkout's ``src`` directory closerdesk is served from (none: this one)."""


def start_closerdesk(
    data: dict[str, Any], url: str, port: int, workers: int | None = None
) -> Server:
    command = [str(VENV_BIN / "closerdesk"), "serve", "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    name = "closerdesk" if workers is None else f"closerdesk --workers {workers}"
    return start_server(name, command, port, closerdesk_env(data, url))


def start_baseline(data: dict[str, Any], url: str, port: int) -> Server:
    command = [
        sys.executable, str(BENCH / "api_baseline.py"), "--port", str(port), "--url", url,
        "--secret-key", data["secret_key"], "--public-base-url", data["public_base_url"],
    ]  # fmt: skip
    return start_server("baseline", command, port, {})


def serve_has_workers_option() -> bool:
    help_text = subprocess.run(
        [str(VENV_BIN / "closerdesk"), "serve", "--help"],
        env={**os.environ, **({"PYTHONPATH": SOURCE[0]} if SOURCE else {})},
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "--workers" in help_text


# --- requests ---------------------------------------------------------------------------------
@dataclass
class Targets:
    """What the load asks for: (path, API key) pairs and the G3 calls."""

    g1: list[tuple[str, str]]
    g2: list[tuple[str, str]]
    g3_key: str
    g3: dict[str, dict[str, Any]]


async def pick_targets(data: dict[str, Any], url: str) -> Targets:
    keys = {org["id"]: org["api_key"] for org in data["organizations"]}
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT id, organization_id FROM calls TABLESAMPLE SYSTEM (0.5) REPEATABLE (10)"
            " LIMIT 2000"
        )
    finally:
        await conn.close()
    g1 = [(f"/v1/calls/{r['id']}", keys[r["organization_id"]]) for r in rows]
    closers = [
        (closer, org["api_key"]) for org in data["organizations"] for closer in org["closers"]
    ]
    g2 = [(f"/v1/calls?closer_id={c}&limit=100", key) for c, key in closers[4::3]]
    return Targets(g1, g2, data["organizations"][0]["api_key"], data["g3"])


def lua_script(requests: Sequence[tuple[str, str]], directory: Path, name: str) -> Path:
    """A wrk script that walks the (path, key) pairs in turn."""
    entries = ",\n".join(f'{{"{path}", "Bearer {key}"}}' for path, key in requests)
    script = directory / f"{name}.lua"
    script.write_text(
        f"local reqs = {{\n{entries}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i + 1\n  local r = reqs[(i % #reqs) + 1]\n"
        '  return wrk.format("GET", r[1], {Authorization = r[2]})\nend\n'
    )
    return script


def check_same_bodies(targets: Targets) -> None:
    """G1 and G2 answer byte-identical JSON from closerdesk and the baseline."""
    for path, key in (targets.g1[0], targets.g1[1], targets.g2[0]):
        bodies = []
        for port in (CLOSERDESK_PORT, BASELINE_PORT):
            response = httpx.get(
                f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 200, (port, response.text[:300])
            bodies.append(response.content)
        if bodies[0] != bodies[1]:
            diff = next(i for i, (a, b) in enumerate(zip(*bodies, strict=False)) if a != b)
            raise AssertionError(
                f"bodies differ for {path} at byte {diff}:\n"
                f"closerdesk {bodies[0][diff - 80 : diff + 80]!r}\n"
                f"baseline   {bodies[1][diff - 80 : diff + 80]!r}"
            )


# --- measuring --------------------------------------------------------------------------------
@dataclass
class Figures:
    """One measurement of one path on one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency_ms(output: str, label: str) -> float:
    match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    assert match, output
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(server: Server, script: Path, connections: int, duration: float) -> Figures:
    """wrk on ``LOAD_CORE``; fails on any non-2xx answer or socket error."""
    cpu = server.cpu_seconds()
    output = subprocess.run(
        ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
         "--latency", "-s", str(script), f"http://127.0.0.1:{server.port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu = server.cpu_seconds() - cpu
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"{server.name}: wrk saw errors:\n{output}")
    match = re.search(r"(\d+) requests in", output)
    assert match, output
    requests = int(match.group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return Figures(
        rps, _latency_ms(output, "50%"), _latency_ms(output, "99%"), cpu * 1000 / requests
    )


async def holder(url: str, call_id: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        closer: str = await conn.fetchval("SELECT closer_id FROM calls WHERE id = $1", call_id)
        return closer
    finally:
        await conn.close()


def reassign_flips(url: str, g3: dict[str, Any]) -> Iterator[str]:
    """The next closer to move the call to, forever: the one that does not hold it."""
    first, second = g3["closers"]
    current = asyncio.run(holder(url, g3["call_id"]))
    while True:
        current = second if current == first else first
        yield current


def run_reassigns(server: Server, url: str, key: str, g3: dict[str, Any], n: int) -> Figures:
    """``n`` sequential reassigns of the G3 call over one keep-alive connection."""
    flips = reassign_flips(url, g3)
    path = f"/v1/calls/{g3['call_id']}/reassign-closer"
    headers = {"Authorization": f"Bearer {key}"}
    times = []
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers=headers) as client:
        cpu, started = server.cpu_seconds(), time.perf_counter()
        for closer in (next(flips) for _ in range(n)):
            began = time.perf_counter()
            response = client.post(path, json={"new_closer_id": closer})
            times.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise RuntimeError(f"{server.name}: reassign {response.text[:300]}")
        elapsed, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu
    times.sort()
    return Figures(
        n / elapsed,
        statistics.median(times) * 1000,
        times[min(n - 1, int(n * 0.99))] * 1000,
        cpu * 1000 / n,
    )


# --- the phases -------------------------------------------------------------------------------
PATHS = ("G1 c=8", "G1 c=32", "G2 c=8", "G3 10", "G3 10000")


@dataclass
class Results:
    """Figures per (server, path), one per round; peak RSS per server."""

    figures: dict[tuple[str, str], list[Figures]] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    round_trips: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)

    def add(self, server: str, path: str, figures: Figures) -> None:
        self.figures.setdefault((server, path), []).append(figures)


def measure_round(
    servers: Sequence[Server],
    scripts: dict[str, Path],
    targets: Targets,
    url: str,
    duration: float,
    results: Results,
) -> None:
    """One round: every path on every server, the servers interleaved path by path."""
    for path in PATHS:
        for server in servers:
            if path.startswith("G3"):
                figures = run_reassigns(
                    server, url, targets.g3_key, targets.g3[path.split()[1]], G3_REQUESTS
                )
            else:
                connections = int(path.rpartition("=")[2])
                figures = run_wrk(server, scripts[path.split()[0]], connections, duration)
            results.add(server.name, path, figures)
            if path == "G1 c=32":
                results.rss_mb[server.name] = server.peak_rss_mb()  # peak under G1
            print(
                f"  {server.name:<24} {path:<9} {figures.rps:8.1f} req/s  "
                f"p50 {figures.p50_ms:7.2f} ms  p99 {figures.p99_ms:7.2f} ms  "
                f"cpu {figures.cpu_ms:6.2f} ms/req",
                flush=True,
            )


def measure_workers(
    data: dict[str, Any], url: str, scripts: dict[str, Path], duration: float, results: Results
) -> None:
    """G1 at 32 connections against ``closerdesk serve --workers 2`` (still on core 1)."""
    server = start_closerdesk(data, url, COUNTED_PORT, workers=2)
    try:
        run_wrk(server, scripts["G1"], 32, 2)  # warm-up
        figures = run_wrk(server, scripts["G1"], 32, duration)
        results.add(server.name, "G1 c=32", figures)
        results.rss_mb[server.name] = server.peak_rss_mb()
        print(f"  {server.name:<24} G1 c=32   {figures.rps:8.1f} req/s", flush=True)
    finally:
        server.stop()


async def count_round_trips(
    name: str,
    start: Callable[[str, int], Server],
    targets: Targets,
    url: str,
    results: Results,
) -> None:
    """Per request: round trips on the wire between a fresh server and PostgreSQL."""
    host, port = re.search(r"@([^:/]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    proxy = RoundTripProxy(host, int(port))
    await proxy.start()
    proxied = url.replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")
    server = await asyncio.to_thread(start, proxied, COUNTED_PORT)
    try:
        base = f"http://127.0.0.1:{COUNTED_PORT}"
        async with httpx.AsyncClient(base_url=base) as client:
            for path in ("G1", "G2", "G3 10", "G3 10000"):
                await _send(client, await _counted_requests(path, targets, url))  # warm-up
                requests = await _counted_requests(path, targets, url)
                proxy.reset()
                proxy.active = True
                await _send(client, requests)
                proxy.active = False
                kept, dropped = proxy.request_counts()
                n = len(requests)
                counts = {kind: count / n for kind, count in kept.items()}
                counts["total"] = sum(kept.values()) / n
                counts["background checkouts left out"] = dropped / n
                results.round_trips[(name, path)] = counts
    finally:
        await asyncio.to_thread(server.stop)
        await proxy.close()


async def _send(client: httpx.AsyncClient, requests: Sequence[tuple[str, str, str, Any]]) -> None:
    for method, target, key, body in requests:
        headers = {"Authorization": f"Bearer {key}"}
        response = await client.request(method, target, headers=headers, json=body)
        assert response.status_code == 200, response.text[:300]


async def _counted_requests(
    path: str, targets: Targets, url: str
) -> list[tuple[str, str, str, Any]]:
    n = COUNTED_REQUESTS
    if path == "G1":
        return [("GET", p, k, None) for p, k in targets.g1[:n]]
    if path == "G2":
        return [("GET", p, k, None) for p, k in targets.g2[:n]]
    g3 = targets.g3[path.split()[1]]
    first, second = g3["closers"]
    current = await holder(url, g3["call_id"])
    order = [second, first] if current == first else [first, second]
    target = f"/v1/calls/{g3['call_id']}/reassign-closer"
    return [("POST", target, targets.g3_key, {"new_closer_id": order[i % 2]}) for i in range(n)]


# --- the table --------------------------------------------------------------------------------
def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_of(results: Results, path: str, attribute: str, server: str = "closerdesk") -> float:
    """Median over the rounds of closerdesk / baseline for one figure. A server measured in
    fewer rounds (``--workers 2``, once, after the last round) is paired with the baseline's
    last rounds, the nearest in time."""
    ours = results.figures.get((server, path), [])
    theirs = results.figures.get(("baseline", path), [])
    theirs = theirs[len(theirs) - len(ours) :]
    return _median(
        [getattr(a, attribute) / getattr(b, attribute) for a, b in zip(ours, theirs, strict=True)]
    )


def print_table(results: Results, rounds: int) -> None:
    def med(server: str, path: str, attribute: str) -> float:
        return _median([getattr(f, attribute) for f in results.figures.get((server, path), [])])

    def trips(server: str, path: str) -> str:
        counts = results.round_trips.get((server, path.replace(" c=8", "").replace(" c=32", "")))
        if not counts:
            return "-"
        return f"{counts['total']:.1f}"

    head = (
        f"{'path':<10}{'server':<26}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms/req':>11}"
        f"{'round trips':>12}{'req/s ratio':>12}{'p99 ratio':>10}"
    )
    print(f"\nmedians of {rounds} interleaved rounds; ratios closerdesk / baseline\n{head}")
    print("-" * len(head))
    servers = ["closerdesk", "closerdesk --workers 2", "baseline"]
    for path in PATHS:
        for server in servers:
            if (server, path) not in results.figures:
                continue
            ratios = ""
            if server != "baseline":
                ratios = (
                    f"{ratio_of(results, path, 'rps', server):>12.3f}"
                    f"{ratio_of(results, path, 'p99_ms', server):>10.2f}"
                )
            print(
                f"{path:<10}{server:<26}{med(server, path, 'rps'):>9.1f}"
                f"{med(server, path, 'p50_ms'):>9.2f}{med(server, path, 'p99_ms'):>9.2f}"
                f"{med(server, path, 'cpu_ms'):>11.2f}{trips(server, path):>12}{ratios}"
            )
    print_round_trip_detail(results)
    rss = ", ".join(f"{name} {mb:.0f} MB" for name, mb in results.rss_mb.items())
    print(f"peak RSS (VmHWM) after G1: {rss}")
    print_targets(results)


def print_round_trip_detail(results: Results) -> None:
    print("round trips per request, by kind (counted on the wire):")
    for (server, path), counts in sorted(results.round_trips.items()):
        detail = ", ".join(
            f"{kind} {value:.2f}" for kind, value in sorted(counts.items()) if kind != "total"
        )
        print(f"  {server:<12}{path:<10}{counts['total']:5.1f}  ({detail})")


def print_targets(results: Results) -> None:
    def trips(path: str) -> float:
        return results.round_trips.get(("closerdesk", path), {}).get("total", float("nan"))

    growth = _median(
        [a.p50_ms / b.p50_ms for a, b in zip(
            results.figures.get(("closerdesk", "G3 10000"), []),
            results.figures.get(("closerdesk", "G3 10"), []), strict=True,
        )]
    )  # fmt: skip
    checks = [
        ("G1 c=8 req/s ≥ 0.4 × baseline", ratio_of(results, "G1 c=8", "rps"), 0.4, True),
        ("G1 c=32 req/s ≥ 0.4 × baseline", ratio_of(results, "G1 c=32", "rps"), 0.4, True),
        ("G1 c=8 p99 ≤ 2 × baseline", ratio_of(results, "G1 c=8", "p99_ms"), 2.0, False),
        ("G1 c=32 p99 ≤ 2 × baseline", ratio_of(results, "G1 c=32", "p99_ms"), 2.0, False),
        ("G1 round trips per GET = 1", trips("G1"), 1.0, False),
        ("G2 req/s ≥ 0.5 × baseline", ratio_of(results, "G2 c=8", "rps"), 0.5, True),
        ("G3 round trips ≤ 10 (new closer 10)", trips("G3 10"), 10.0, False),
        ("G3 round trips ≤ 10 (new closer 10,000)", trips("G3 10000"), 10.0, False),
        ("G3 req/s ≥ 0.5 × baseline (10)", ratio_of(results, "G3 10", "rps"), 0.5, True),
        ("G3 req/s ≥ 0.5 × baseline (10,000)", ratio_of(results, "G3 10000", "rps"), 0.5, True),
        ("G3 p50 growth 10 → 10,000 ≤ 1.1 ×", growth, 1.1, False),
    ]
    print("targets:")
    for label, value, limit, at_least in checks:
        met = value >= limit if at_least else value <= limit
        print(f"  {label:<42} {value:8.3f}  {'met' if met else 'NOT met'}")


# --- main -------------------------------------------------------------------------------------
def machine_line(url: str) -> str:
    async def version() -> str:
        conn = await asyncpg.connect(url)
        try:
            text: str = await conn.fetchval("SHOW server_version")
            return text
        finally:
            await conn.close()

    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()} ({platform.python_implementation()}), PostgreSQL "
        f"{asyncio.run(version())}, load average {os.getloadavg()[0]:.2f}"
    )


def load_data(args: argparse.Namespace) -> dict[str, Any]:
    if not args.skip_dataset and not DATA_FILE.exists():
        build = [sys.executable, str(BENCH / "dataset.py"), "--url", args.url]
        if args.calls is not None:
            build += ["--calls", str(args.calls)]
        subprocess.run(build, check=True)
    data: dict[str, Any] = json.loads(DATA_FILE.read_text())
    if data["database_url"] != args.url:
        sys.exit(f"{DATA_FILE} describes {data['database_url']}, not {args.url}: run dataset.py")
    return data


@contextmanager
def servers(data: dict[str, Any], url: str) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        started.append(start_closerdesk(data, url, CLOSERDESK_PORT))
        started.append(start_baseline(data, url, BASELINE_PORT))
        yield started
    finally:
        for server in started:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--skip-dataset", action="store_true", help="never build the dataset")
    parser.add_argument("--url", default=DEFAULT_URL, help="plain postgresql:// URL")
    parser.add_argument("--calls", type=int, help="calls of a dataset built now (default 1M)")
    parser.add_argument("--src", help="serve closerdesk from this checkout's src directory")
    args = parser.parse_args()
    if args.src:
        SOURCE.append(str(Path(args.src).resolve()))
        print(f"closerdesk served from {SOURCE[0]}")
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk (Debian/Ubuntu), brew install wrk")
    if shutil.which("taskset") is None:
        sys.exit("taskset is missing: apt-get install -y util-linux")
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    data = load_data(args)
    print(machine_line(args.url))
    print(f"dataset: {data['calls']:,} calls, {len(data['organizations'])} organizations")
    targets = asyncio.run(pick_targets(data, args.url))
    results = Results()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, servers(data, args.url) as running:
        scripts = {
            "G1": lua_script(targets.g1, Path(tmp), "g1"),
            "G2": lua_script(targets.g2, Path(tmp), "g2"),
        }
        check_same_bodies(targets)
        print("G1 and G2 bodies are byte-identical between closerdesk and the baseline")
        for server in running:  # warm-up: connections, prepared statements, caches
            run_wrk(server, scripts["G1"], 32, 2)
            run_wrk(server, scripts["G2"], 8, 2)
        for number in range(1, args.rounds + 1):
            print(f"round {number}", flush=True)
            measure_round(running, scripts, targets, args.url, args.duration, results)
        if serve_has_workers_option():
            measure_workers(data, args.url, scripts, args.duration, results)
        else:
            print("closerdesk serve has no --workers option in this tree: that row is skipped")
    for name, start in (
        ("closerdesk", lambda u, p: start_closerdesk(data, u, p)),
        ("baseline", lambda u, p: start_baseline(data, u, p)),
    ):
        asyncio.run(count_round_trips(name, start, targets, args.url, results))
    print_table(results, args.rounds)
    print(
        f"load average {os.getloadavg()[0]:.2f} at the end; {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()

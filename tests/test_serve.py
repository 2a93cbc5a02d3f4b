"""``closerdesk serve`` started as a real subprocess: ``--workers N`` (N server processes on one
port, docs/performance.md) and ``--forwarded-allow-ips`` (the client address behind a proxy,
docs/rate-limits.md)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        children = (task / "children").read_text().split()
        found.extend(int(child) for child in children)
    return found


@contextmanager
def served(tmp_path: Path, *arguments: str, **env_vars: str) -> Iterator[tuple[str, int]]:
    """Run ``closerdesk serve`` on a free port with a fresh SQLite file until the block ends;
    yields its base URL and process id once ``/health`` answers, and checks that it stops
    cleanly on SIGINT."""
    port = _free_port()
    env = {
        **os.environ,
        "CLOSERDESK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'served.db'}",
        "CLOSERDESK_LOG_LEVEL": "warning",
        **env_vars,
    }
    env.pop("CLOSERDESK_TEST_DATABASE_URL", None)
    closerdesk = Path(sys.executable).with_name("closerdesk")
    process = subprocess.Popen(  # noqa: S603 - our own entry point
        [str(closerdesk), "serve", "--port", str(port), *arguments],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts slowly
        while True:
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server never answered"
                assert process.poll() is None, "the server stopped before answering"
                time.sleep(0.3)
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stderr.read().decode() if process.stderr else ""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_serve_with_two_workers_answers_from_two_processes(tmp_path: Path) -> None:
    with served(tmp_path, "--workers", "2") as (base, supervisor):
        # uvicorn's supervisor spawns one process per worker (beside a resource tracker).
        workers = [
            pid
            for pid in _children(supervisor)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        for _ in range(20):
            assert httpx.get(f"{base}/health", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("trusted", "separate_budgets"),
    [("*", True), ("10.9.9.9", False)],
    ids=["proxy-trusted", "proxy-not-trusted"],
)
def test_forwarded_for_names_the_client_only_from_a_trusted_proxy(
    tmp_path: Path, trusted: str, separate_budgets: bool
) -> None:
    """Two clients behind one proxy: with the proxy trusted each has its own per-address budget
    (3 requests here); otherwise both share the proxy's."""
    with served(
        tmp_path, "--forwarded-allow-ips", trusted, CLOSERDESK_RATE_LIMIT_PER_ADDRESS="3/minute"
    ) as (base, _):
        # The server's own start-up check of /health already spent one request of 127.0.0.1.
        first = [
            httpx.get(f"{base}/health", headers={"X-Forwarded-For": "203.0.113.7"}).status_code
            for _ in range(3)
        ]
        other = httpx.get(f"{base}/health", headers={"X-Forwarded-For": "198.51.100.9"})
    if separate_budgets:
        assert first == [200, 200, 200]
        assert other.status_code == 200
    else:
        assert 429 in first
        assert other.status_code == 429


def test_serve_refuses_zero_workers() -> None:
    from typer.testing import CliRunner

    from closerdesk.cli import app

    result = CliRunner().invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2
    assert "workers" in result.output

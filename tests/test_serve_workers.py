"""``closerdesk serve --workers N``: N server processes on one port, on uvloop and httptools
(docs/performance.md, "Partner API hot paths"). Started as a real subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
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


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_serve_with_two_workers_answers_from_two_processes(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CLOSERDESK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'served.db'}",
        "CLOSERDESK_LOG_LEVEL": "warning",
    }
    env.pop("CLOSERDESK_TEST_DATABASE_URL", None)
    closerdesk = Path(sys.executable).with_name("closerdesk")
    process = subprocess.Popen(  # noqa: S603 - our own entry point
        [str(closerdesk), "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        answered = None
        while time.monotonic() < deadline and answered is None:
            try:
                answered = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.TransportError:
                time.sleep(0.3)
        assert answered is not None, "the server never answered"
        assert answered.json()["data"]["status"] == "ok"
        # uvicorn's supervisor spawns one process per worker (beside a resource tracker).
        servers = [
            pid
            for pid in _children(process.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(servers) == 2
        for _ in range(20):
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stderr.read().decode() if process.stderr else ""


def test_serve_refuses_zero_workers() -> None:
    from typer.testing import CliRunner

    from closerdesk.cli import app

    result = CliRunner().invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2
    assert "workers" in result.output

"""The log lines closerdesk writes (README.md, ``CLOSERDESK_LOG_JSON``): one JSON object per line on
stderr, for closerdesk's own events and for stdlib records alike."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap


def _lines(code: str) -> list[dict[str, object]]:
    """Run ``code`` in a fresh interpreter (logging is process-wide) and parse its stderr."""
    done = subprocess.run(  # noqa: S603 - this interpreter, code written here
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in done.stderr.splitlines()]


def test_own_events_and_stdlib_records_are_one_json_object_per_line() -> None:
    lines = _lines(
        """
        import logging, structlog
        from closerdesk.logs import configure_logging
        configure_logging("INFO", json=True)
        log = structlog.get_logger("closerdesk.access")
        structlog.contextvars.bind_contextvars(request_id="req_1")
        log.debug("hidden")
        log.info("request", method="GET", path="/v1/calls", status=200)
        logging.getLogger("uvicorn.error").info("started %s", "server")
        logging.getLogger("sqlalchemy").debug("hidden too")
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("unhandled_error", error_type="ZeroDivisionError")
        """
    )
    assert [line["event"] for line in lines] == ["request", "started server", "unhandled_error"]
    access, stdlib, error = lines
    assert list(access) == [
        "method", "path", "status", "event", "request_id", "level", "logger", "timestamp"
    ]  # fmt: skip
    assert (access["request_id"], access["level"], access["logger"]) == (
        "req_1",
        "info",
        "closerdesk.access",
    )
    assert str(access["timestamp"]).endswith("Z")
    assert (stdlib["level"], stdlib["logger"], stdlib["request_id"]) == (
        "info",
        "uvicorn.error",
        "req_1",
    )
    assert error["level"] == "error"
    assert "ZeroDivisionError: division by zero" in str(error["exception"])


def test_the_level_filters_own_events_and_stdlib_records() -> None:
    lines = _lines(
        """
        import logging, structlog
        from closerdesk.logs import configure_logging
        configure_logging("warning", json=True)
        log = structlog.get_logger("closerdesk.x")
        log.info("no")
        log.warning("yes", n=1)
        logging.getLogger("closerdesk.y").info("no either")
        logging.getLogger("closerdesk.y").error("also yes")
        """
    )
    assert [(line["event"], line["level"]) for line in lines] == [
        ("yes", "warning"),
        ("also yes", "error"),
    ]
    assert logging.getLogger().level != logging.CRITICAL  # this process's logging is untouched


def test_lines_follow_sys_stderr_and_a_closed_stream_breaks_nothing() -> None:
    """A test runner swaps ``sys.stderr`` per test and closes the old one: lines go to whichever
    stream is current, and one written to a closed stream is dropped, not raised into the work
    that logged it (a webhook delivery, a request)."""
    lines = _lines(
        """
        import io, sys, structlog
        from closerdesk.logs import configure_logging
        configure_logging("INFO", json=True)
        log = structlog.get_logger("closerdesk.x")
        log.info("one")
        real, swap = sys.stderr, io.StringIO()
        sys.stderr = swap
        log.info("two")
        captured = swap.getvalue()
        swap.close()
        log.error("dropped")
        sys.stderr = real
        log.info("three", captured=captured)
        """
    )
    assert [line["event"] for line in lines] == ["one", "three"]
    assert json.loads(str(lines[1]["captured"]))["event"] == "two"

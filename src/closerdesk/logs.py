"""structlog set-up: one JSON line per event, with the request id bound per request."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import structlog


class StderrLogger:
    """The structlog logger closerdesk's own events end in: one ``write`` and ``flush`` of the
    rendered line on ``sys.stderr``, and the name it was asked for (so ``add_logger_name`` writes
    the same ``logger`` field as for stdlib records).

    ``sys.stderr`` is looked up at each line, not held: whoever swaps it (a test runner capturing
    output, a daemon redirecting it) gets the lines, and a stream closed since is never written
    to. Like the stdlib ``logging`` module in production, a line that cannot be written is dropped
    rather than raised into the work it reports (a delivery, a request)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        stream = sys.stderr
        try:
            with _LOCK:
                stream.write(message + "\n")
                stream.flush()
        except (OSError, ValueError):  # closed or broken stream: drop the line, keep working
            pass

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    def __repr__(self) -> str:
        return f"<StderrLogger(name={self.name!r})>"


_LOCK = threading.Lock()


def _stderr_logger(*args: Any) -> StderrLogger:
    """``structlog.get_logger(name)`` → a :class:`StderrLogger` named ``name``."""
    return StderrLogger(str(args[0]) if args else "")


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """One renderer (JSON, or console for humans) for closerdesk's own events and for stdlib
    records (uvicorn, SQLAlchemy): ``event``, the bound context (``request_id``), ``level``,
    ``logger`` and an ISO ``timestamp`` (UTC), one line each on stderr.

    closerdesk's events go straight from structlog to stderr: a filtering bound logger drops
    those below ``level`` at the call, and no ``logging.LogRecord`` is made for the others
    (the access log writes one line per request; docs/performance.md, "Read paths"). Stdlib
    records keep their handler on the root logger, rendered by the same processors."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=_stderr_logger,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric_level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True

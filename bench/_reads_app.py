"""The closerdesk app of ``bench/reads.py``, configured as ``closerdesk serve`` configures it
(logging from ``CLOSERDESK_LOG_LEVEL``/``CLOSERDESK_LOG_JSON``)."""

from __future__ import annotations

from fastapi import FastAPI

from closerdesk.app import create_app
from closerdesk.config import get_settings
from closerdesk.logs import configure_logging


def app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)

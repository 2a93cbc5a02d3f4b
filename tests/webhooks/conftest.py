"""Fixtures of the webhook tests: a real receiver on 127.0.0.1 and an app that may post to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from closerdesk.app import create_app
from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.providers import Providers
from tests.factories import Org
from tests.webhooks.helpers import Hooks
from tests.webhooks.receiver import Receiver


@pytest.fixture(scope="session")
def private_settings(settings: Settings) -> Settings:
    """Settings that allow http and loopback targets (the receiver is on 127.0.0.1)."""
    return settings.model_copy(update={"webhook_allow_private_targets": True})


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def receiver(receiver_server: Receiver) -> Iterator[Receiver]:
    """The session's receiver, running, with nothing recorded or scripted."""
    if not receiver_server.running:
        receiver_server.start()
    receiver_server.reset()
    yield receiver_server
    if not receiver_server.running:
        receiver_server.start()


@pytest.fixture
def private_app(private_settings: Settings, database: Database, providers: Providers) -> FastAPI:
    return create_app(private_settings, database=database, providers=providers)


@pytest.fixture
async def private_client(private_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=private_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    await private_app.state.dispatcher.aclose()


@pytest.fixture
async def hooks(
    private_client: httpx.AsyncClient,
    org: Org,
    receiver: Receiver,
    database: Database,
    private_settings: Settings,
) -> AsyncIterator[Hooks]:
    """Subscribe receiver endpoints through the API; after the test, every request the
    receiver saw is verified (independent verifier and ``standardwebhooks``)."""
    h = Hooks(private_client, org, receiver, database, private_settings)
    try:
        yield h
    finally:
        await h.aclose()
    h.check_all()

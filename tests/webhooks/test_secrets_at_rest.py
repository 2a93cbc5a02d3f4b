"""Signing secrets are stored encrypted, shown in clear once, and sign under rotated keys."""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text

from closerdesk.config import Settings
from closerdesk.db import Database
from closerdesk.kit.secrets import SecretBox, secret_box
from closerdesk.webhooks.service import record_event, reseal_secrets
from tests.factories import Org
from tests.webhooks.helpers import Hooks, attempt_rows, delivery_rows, lead_created

NEW = Fernet.generate_key().decode()


async def stored(database: Database, subscription_id: str) -> dict[str, Any]:
    """The raw columns, read with plain SQL."""
    async with database.reader() as s:
        row = (
            await s.execute(
                text("SELECT secret, previous_secret FROM webhook_subscriptions WHERE id = :id"),
                {"id": subscription_id},
            )
        ).one()
    return {"secret": row.secret, "previous_secret": row.previous_secret}


async def ping_all(database: Database, org: Org) -> None:
    async with database.writer() as s:
        await record_event(s, org.id, lead_created("lead_1"))
        await s.commit()


def with_keys(settings: Settings, keys: str) -> Settings:
    return settings.model_copy(update={"encryption_keys": SecretStr(keys)})


async def test_the_secret_is_stored_encrypted_and_shown_in_clear(
    hooks: Hooks, settings: Settings
) -> None:
    sub = await hooks.subscribe(event_types=["lead.created"])
    shown = sub["secret"]
    assert shown.startswith("whsec_")
    raw = await stored(hooks.database, sub["id"])
    assert raw["previous_secret"] is None
    assert "whsec_" not in raw["secret"]
    assert shown[len("whsec_") :] not in raw["secret"]
    assert secret_box(settings).decrypt(raw["secret"]) == shown

    rotated = await hooks.rotate(sub)
    raw = await stored(hooks.database, sub["id"])
    assert "whsec_" not in raw["secret"] + raw["previous_secret"]
    assert secret_box(settings).decrypt(raw["secret"]) == rotated
    assert secret_box(settings).decrypt(raw["previous_secret"]) == shown
    listed = await hooks.get(sub["id"])
    assert "secret" not in listed

    # What arrives is signed with the secrets shown (checked against both, after the test).
    await ping_all(hooks.database, hooks.org)
    await hooks.dispatcher().drain()
    [request] = hooks.receiver.requests(sub["name"])
    assert request.headers["webhook-signature"].count("v1,") == 2


async def test_deliveries_keep_verifying_through_a_key_rotation(
    hooks: Hooks, settings: Settings
) -> None:
    """Made under the old key; signed with the new key first and the old second; re-encrypted;
    signed with the new key alone."""
    old_keys = settings.encryption_keys.get_secret_value()
    sub = await hooks.subscribe(event_types=["lead.created"])
    await hooks.rotate(sub)  # a previous secret too
    before = await stored(hooks.database, sub["id"])

    both = SecretBox([NEW, old_keys])
    await ping_all(hooks.database, hooks.org)
    assert await hooks.dispatcher(box=both).drain() == 1

    async with hooks.database.writer() as s:
        done = await reseal_secrets(s, both)
        await s.commit()
    assert (done.resealed, done.current) == (2, 0)
    after = await stored(hooks.database, sub["id"])
    new_only = SecretBox([NEW])
    for column in ("secret", "previous_secret"):
        assert after[column] != before[column]
        assert new_only.decrypt(after[column]) == both.decrypt(before[column])
        assert new_only.is_current(after[column])

    async with hooks.database.writer() as s:  # nothing left to do: a second run changes nothing
        again = await reseal_secrets(s, both)
        await s.commit()
    assert (again.resealed, again.current) == (0, 2)

    await ping_all(hooks.database, hooks.org)
    assert await hooks.dispatcher(box=new_only).drain() == 1
    requests = hooks.receiver.requests(sub["name"])
    assert len(requests) == 2
    assert all(r.headers["webhook-signature"].count("v1,") == 2 for r in requests)


async def test_a_secret_no_key_opens_is_not_sent_and_says_why(
    hooks: Hooks, settings: Settings
) -> None:
    """The old key dropped too early: the attempt fails, recorded, and is retried on the usual
    schedule (so putting the key back recovers it); other subscriptions are not held up."""
    sub = await hooks.subscribe(event_types=["lead.created"])
    other = await hooks.subscribe(event_types=["lead.created"])
    async with hooks.database.writer() as s:  # only ``other`` moves to the new key
        await s.execute(
            text("UPDATE webhook_subscriptions SET secret = :secret WHERE id = :id"),
            {"secret": SecretBox([NEW]).encrypt(other["secret"]), "id": other["id"]},
        )
        await s.commit()

    await ping_all(hooks.database, hooks.org)
    assert await hooks.dispatcher(box=SecretBox([NEW])).drain() == 2
    assert hooks.receiver.requests(sub["name"]) == []
    assert len(hooks.receiver.requests(other["name"])) == 1
    [delivery] = await delivery_rows(hooks.database, sub["id"])
    assert delivery.status == "pending"
    assert delivery.last_error == (
        "not sent: the signing secret cannot be decrypted with any key in "
        "CLOSERDESK_ENCRYPTION_KEYS; add the key it was encrypted with (after the first one)"
    )
    [attempt] = await attempt_rows(hooks.database, delivery.id)
    assert attempt.status_code is None
    assert not attempt.succeeded

    fixed = with_keys(settings, f"{NEW},{settings.encryption_keys.get_secret_value()}")
    await hooks.dispatcher(box=secret_box(fixed), clock=lambda: delivery.next_attempt_at).drain()
    assert len(hooks.receiver.requests(sub["name"])) == 1

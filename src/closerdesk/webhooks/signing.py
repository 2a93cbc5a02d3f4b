"""Standard Webhooks v1 signing (docs/webhooks.md), with the ``standardwebhooks`` library.

Headers: ``webhook-id`` (the event's ``msg_…`` id, the same on every retry),
``webhook-timestamp`` (Unix seconds of this attempt), ``webhook-signature`` (``v1,<base64>``;
two of them, space-separated, while a rotated-out secret is still in its 24 h overlap).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def new_secret() -> str:
    """A fresh ``whsec_<base64 of 32 random bytes>`` secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """``v1,<sig>`` for each secret, space-separated (any one verifying is enough)."""
    return " ".join(
        Webhook(s).sign(msg_id=msg_id, timestamp=timestamp, data=body) for s in secrets_
    )


def signed_headers(
    secrets_: Sequence[str], msg_id: str, timestamp: datetime, body: str
) -> dict[str, str]:
    """The three Standard Webhooks headers plus the content type."""
    return {
        "content-type": "application/json",
        "user-agent": "closerdesk-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature_header(secrets_, msg_id, timestamp, body),
    }

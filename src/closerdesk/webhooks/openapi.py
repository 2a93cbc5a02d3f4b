"""The OpenAPI ``webhooks`` section: one entry per event type with its body's schema.

Partners generate their receivers' types from it (docs/webhooks.md, "Event types"). Each entry
is a ``POST`` to the partner's endpoint with the signed headers of docs/webhooks.md, "Headers
and signing"; a 2xx answer within 15 s is success. The bodies are described as they are sent
(pydantic's serialization schemas), sharing ``components.schemas`` with the paths.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from closerdesk.webhooks.events import EventType
from closerdesk.webhooks.payloads import DATA_MODELS, EVENT_MODELS

REF = "#/components/schemas/{model}"
SIGNED_HEADERS = {
    "webhook-id": "The event id (`msg_…`), the same on every retry: de-duplicate on it",
    "webhook-timestamp": "Unix seconds of this attempt",
    "webhook-signature": "`v1,<base64 HMAC-SHA256>`, space-separated (two during a rotation)",
}


def operation_id(event_type: EventType) -> str:
    """``call.closer_reassigned`` → ``callCloserReassignedEvent``."""
    words = event_type.value.replace(".", "_").split("_")
    return words[0] + "".join(w.capitalize() for w in words[1:]) + "Event"


def add_webhooks(document: dict[str, Any]) -> None:
    """Fill ``document["webhooks"]`` (one ``POST`` per event type, ``ping`` included) and add
    the schemas their bodies use to ``components.schemas`` (a schema the paths already define
    under the same name is kept: it is the same model)."""
    pairs = [(model, "serialization") for model in EVENT_MODELS.values()]
    refs, defs = models_json_schema(pairs, ref_template=REF)  # type: ignore[arg-type]
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in defs.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    webhooks: dict[str, Any] = {}
    for event_type, model in EVENT_MODELS.items():
        webhooks[event_type.value] = {
            "post": {
                "operationId": operation_id(event_type),
                "summary": event_type.value,
                "description": (DATA_MODELS[event_type].__doc__ or "").strip(),
                "tags": ["webhooks"],
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "description": description,
                        "schema": {"type": "string"},
                    }
                    for name, description in SIGNED_HEADERS.items()
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": refs[(model, "serialization")]}},
                },
                "responses": {"2XX": {"description": "Received (any other answer is retried)"}},
            }
        }
    document["webhooks"] = webhooks

"""Readable component names in the OpenAPI document, for the clients generated from it."""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def readable_schema_names(document: dict[str, Any]) -> None:
    """Rename components such as ``Envelope_Call_`` (what generators turn into
    ``EnvelopeCall``, ``EnvelopedictstrStr``) to their model's title (``CallEnvelope``,
    ``StringMapEnvelope``; ``kit/schemas.py`` names them), and every ``$ref`` with them."""
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    renames: dict[str, str] = {}
    for name, schema in schemas.items():
        title = schema.get("title") if isinstance(schema, dict) else None
        if _NAME.match(name) or not isinstance(title, str) or not _NAME.match(title):
            continue
        if title in schemas or title in renames.values():
            continue
        renames[name] = title
    if not renames:
        return
    for old, new in renames.items():
        schemas[new] = schemas.pop(old)
    refs = {
        f"#/components/schemas/{old}": f"#/components/schemas/{new}" for old, new in renames.items()
    }
    _rewrite(document, refs)


def _rewrite(node: Any, refs: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in refs:
            node["$ref"] = refs[ref]
        for value in node.values():
            _rewrite(value, refs)
    elif isinstance(node, list):
        for value in node:
            _rewrite(value, refs)

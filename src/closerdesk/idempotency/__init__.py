"""``Idempotency-Key`` on every POST and PATCH under ``/v1`` (docs/idempotency.md).

``store`` keeps the keys in the database; ``routes`` claims a key before the handler runs and
records the answer in the request's own transaction; ``middleware`` records what the handler
did not (an error answer) and releases the key after a 5xx or a crash.
"""

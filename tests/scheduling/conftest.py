"""The scheduling core is pure: its tests need no database."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _empty_tables() -> None:
    """Overrides the suite's autouse fixture of the same name: nothing to empty here, and no
    database is set up for these tests."""

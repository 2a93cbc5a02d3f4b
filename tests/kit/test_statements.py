"""Statements built once per shape (``closerdesk.kit.statements``)."""

from __future__ import annotations

import pytest
from sqlalchemy import Select, bindparam, select

from closerdesk.kit.statements import built_once, forget_built_statements
from closerdesk.models import Call

built: list[bool] = []


def _build_calls(with_closer: bool) -> Select[tuple[str]]:
    built.append(with_closer)
    stmt = select(Call.id).where(Call.organization_id == bindparam("organization_id"))
    if with_closer:
        stmt = stmt.where(Call.closer_id == bindparam("closer_id"))
    return stmt


_calls = built_once(_build_calls)


def test_each_shape_is_built_once_until_the_caches_are_emptied() -> None:
    built.clear()
    first = _calls(True)
    assert _calls(True) is first
    other = _calls(False)
    assert other is not first
    assert "closer_id" in str(first)
    assert "closer_id" not in str(other)
    assert built == [True, False]
    forget_built_statements()
    assert _calls(True) is not first
    assert built == [True, False, True]


def test_a_shape_argument_must_be_hashable() -> None:
    with pytest.raises(TypeError):
        _calls([True])  # type: ignore[arg-type]

"""Statements built once per shape (``closerdesk.kit.statements``)."""

from __future__ import annotations

import pytest
from sqlalchemy import Select, bindparam, select

from closerdesk.calls.repository import overlaps
from closerdesk.kit.statements import built_once, forget_built_statements
from closerdesk.models import Call

built: list[bool] = []


def _build_calls(with_closer: bool) -> Select[str]:
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


def test_a_rule_given_a_bound_start_needs_its_bound_lower_limit() -> None:
    """``start - CALL_LOOKBACK`` of a ``bindparam`` would be SQL arithmetic, not the index's
    lower bound: the overlap rule refuses it and takes ``after=`` instead."""
    start, end = bindparam("start"), bindparam("end")
    with pytest.raises(TypeError, match=r"bound lower limit \(after=\)"):
        overlaps(start, end)
    assert "calls.scheduled_at > :after" in str(overlaps(start, end, after=bindparam("after")))

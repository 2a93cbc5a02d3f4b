"""Statements built once per shape, their values bound at each execution (docs/performance.md,
"Statements built once").

Building a SQLAlchemy statement is Python work: every ``Column == value`` makes expression
objects, and the subquery of a ``UNION ALL`` copies each of its columns (foreign keys
included). On a hot path that costs more than the database's answer. A statement whose
values are ``bindparam``s is built once for each shape it can take (a ``functools.cache``
keyed on what changes its SQL, never on values) and executed with a dict of values;
SQLAlchemy's compiled cache then finds it without rebuilding it.

The rules that make up such statements (``calls.repository.overlaps``, a live reservation…)
take either a value or a ``bindparam`` (:data:`Value`), so one rule serves the statements built
per call and those built once.
"""

from __future__ import annotations

from typing import TypeAlias, TypeVar, Union

from sqlalchemy import BindParameter

T = TypeVar("T")

Value: TypeAlias = Union[T, BindParameter[T]]  # noqa: UP007 (a generic alias needs Union)
"""A value in a rule: a Python value bound where the statement is built, or a ``bindparam``
of a statement built once (the value is given at execution)."""

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

A builder is a plain function, cached by :func:`built_once` as a call, not as a decorator::

    def _build_busy(with_holds: bool) -> Select[Any]: ...

    _busy = built_once(_build_busy)

so that mutation testing (mutmut leaves decorated functions alone) still changes what it
builds, and the test suite empties every such cache before each test
(:func:`forget_built_statements`): each test builds the statements it runs.

Not for an ORM-enabled UPDATE or DELETE: the session brings the objects it holds up to date
from the statement's own values, and a ``bindparam`` has none until execution, so those are
built per call (``BuiltinCalendar.cancel_event``, a conferencing link's change).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, ParamSpec, TypeAlias, TypeVar, cast

from sqlalchemy import BindParameter

T = TypeVar("T")
P = ParamSpec("P")

Value: TypeAlias = T | BindParameter[T]
"""A value in a rule: a Python value bound where the statement is built, or a ``bindparam``
of a statement built once (the value is given at execution)."""


_caches: list[Any] = []


def built_once(build: Callable[P, T]) -> Callable[P, T]:
    """``build`` cached on its arguments, which name a statement's shape (flags, schema
    classes), never values; the function returned raises ``TypeError`` for an unhashable
    argument."""
    cached = cache(build)
    _caches.append(cached)
    return cast(Callable[P, T], cached)


def forget_built_statements() -> None:
    """Empty the cache of every :func:`built_once` builder: the next call builds again."""
    for cached in _caches:
        cached.cache_clear()

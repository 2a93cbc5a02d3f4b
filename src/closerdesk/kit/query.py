"""Unknown or repeated query parameters are a 400, as unknown body fields are (docs/api.md).

A misspelt filter (``?stauts=won``) would otherwise be dropped silently and answer the whole,
unfiltered list; of a repeated one (``?status=won&status=lost``) only the last would count.
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from closerdesk.errors import ValidationFailed


def _query_params(dependant: Dependant) -> dict[str, Any]:
    """Every query parameter of the route and its dependencies: name → annotation."""
    params = {p.alias: p.field_info.annotation for p in dependant.query_params}
    for sub in dependant.dependencies:
        params.update(_query_params(sub))
    return params


def _repeatable(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_repeatable(arg) for arg in get_args(annotation))
    return (origin or annotation) in (list, tuple, set, frozenset)


def reject_unknown_query_parameters(request: Request) -> None:
    """Raises ``ValidationFailed`` (400) naming each query parameter the route does not take,
    and each scalar one given more than once."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    params = _query_params(route.dependant)
    given = request.query_params
    problems = [(name, "unknown query parameter") for name in given if name not in params]
    problems += [
        (name, "given more than once")
        for name in given
        if name in params and len(given.getlist(name)) > 1 and not _repeatable(params[name])
    ]
    if problems:
        details = [{"field": name, "message": message} for name, message in sorted(set(problems))]
        first = details[0]
        raise ValidationFailed(f"{first['field']}: {first['message']}", details=details)

"""Starlette routes from operation declarations: one Route per path, dispatching by method.

HEAD is answered by the GET operation. The router decides which operation a path means; the
endpoint of that operation then applies everything the operation declares.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ontrackio.gateway.api.endpoint import Checks, endpoint
from ontrackio.gateway.api.operation import Operation


def routes_for(operations: Iterable[Operation], checks: Checks, services: Any) -> list[Route]:
    by_path: dict[str, list[Operation]] = {}
    for op in operations:
        by_path.setdefault(op.path, []).append(op)
    routes = []
    for path, ops in by_path.items():
        handlers = {op.method: endpoint(op, checks, services) for op in ops}
        if len(handlers) != len(ops):
            raise ValueError(f"{path}: one operation per method")

        async def dispatch(request: Request, handlers=handlers) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await handlers[method](request)

        routes.append(Route(path, dispatch, methods=list(handlers)))
    return routes

"""A direct dispatcher for likewise's own routes, in front of FastAPI's router.

FastAPI stays the source of the routes (it generates ``/openapi.json`` from them, serves ``/docs``
and answers 404/405), but matching a request through its router costs about 0.7 ms here: it walks
every candidate of every included router with per-candidate bookkeeping, and the Cloudflare routes
exist twice (with and without ``/client/v4``). Measured on the query path, that was a third of the
server's CPU per request. This dispatcher compiles the same routes once into plain regexes and calls
the endpoint directly, inside only likewise's own two middlewares (observation and the body limit;
see ``LikewiseApp`` in app.py); everything it does not match (wrong method, docs, the explorer,
unknown paths) goes through FastAPI's full stack unchanged. Endpoints take only path parameters and the ``Request`` (query
strings are read from ``request.query_params``), so no dependency injection is lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

from ..errors import LikewiseError

__all__ = ["FastRoute", "FastDispatch", "compile_routes", "match"]


@dataclass(frozen=True)
class FastRoute:
    """One compiled route: what the access log and metrics call it, and how to call it."""

    regex: re.Pattern[str]
    path_format: str
    methods: frozenset[str]
    endpoint: Callable[..., Awaitable[Any]]
    convertors: dict[str, Any]


def compile_routes(routers: Iterable[tuple[str, APIRouter]]) -> list[FastRoute]:
    """``(prefix, router)`` pairs → compiled routes, in registration order (first match wins)."""
    out: list[FastRoute] = []
    for prefix, router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            regex, path_format, convertors = compile_path(prefix + route.path)
            methods = frozenset(route.methods or ())
            if "GET" in methods:
                methods = methods | {"HEAD"}
            out.append(FastRoute(regex, path_format, methods, route.endpoint, convertors))
    return out


def match(routes: list[FastRoute], scope: Scope) -> tuple[FastRoute, dict[str, Any]] | None:
    """The first route whose path and method both match, with its converted path parameters."""
    path, method = scope["path"], scope["method"]
    for route in routes:
        found = route.regex.match(path)
        if found is not None and method in route.methods:
            return route, {k: route.convertors[k].convert(v) for k, v in found.groupdict().items()}
    return None


class FastDispatch:
    """The innermost ASGI app of the fast path: call the endpoint matched by :func:`match`."""

    def __init__(self, render: Callable[[Request, LikewiseError], Any]) -> None:
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, params = scope["likewise.match"]
        scope["path_params"] = params
        scope["route"] = route  # for the access log and the metrics (path_format)
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request=request, **params)
        except LikewiseError as exc:
            response = self.render(request, exc)
        await response(scope, receive, send)

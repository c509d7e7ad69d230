"""Plumbing shared by the route modules: app state, auth, body reading, JSON responses, threads.

Route handlers are ``async def`` that read and parse the body on the event loop, then run the
database or model call in a worker thread (:func:`run`), so a faiss search or an ONNX batch never
blocks other requests. Responses are serialised here with the standard library directly, skipping
FastAPI's response-model machinery: it is the largest per-request cost on small queries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ..database import Database
from ..index import Index
from .auth import Authenticator, Principal, Role
from .errors import ApiError, is_json_media_type, parse_json, unsupported_media_type
from .metrics import Metrics
from .models import ModelRegistry

__all__ = [
    "NO_RETRY",
    "AppState",
    "authorize",
    "as_float_array",
    "vectors_as_arrays",
    "json_bytes",
    "json_response",
    "read_body",
    "read_json",
    "run",
    "open_index",
    "state",
]

T = TypeVar("T")

# Stainless SDKs (Cloudflare's, OpenAI's) retry 409, 429 and 5xx unless told not to.
NO_RETRY = {"x-should-retry": "false"}


@dataclass
class AppState:
    """Everything a request needs, stored on ``app.state.likewise``."""

    db: Database
    auth: Authenticator
    models: ModelRegistry
    metrics: Metrics
    max_body_bytes: int
    max_batch: int
    close_db: bool
    extra: dict[str, Any] = field(default_factory=dict)


def state(request: Request) -> AppState:
    return request.app.state.likewise  # type: ignore[no-any-return]


def authorize(request: Request, role: Role, index: str | None = None) -> Principal:
    """Authenticate the request and require ``role`` on ``index``; 401/403 otherwise."""
    principal = state(request).auth.authenticate(request.headers)
    principal.require(role, index)
    return principal


class QueryLoad:
    """How many query requests this process is handling right now (one event loop: no lock needed).

    A plain vector query (no filter, namespace or stored fields) takes a fraction of a millisecond;
    alone, it is answered on the event loop itself, which saves the worker-thread round trip (about
    a tenth of the time of such a request here). With other queries in flight it goes to a worker
    thread as before, where faiss searches several at once. Both the native and the Vectorize
    query routes count here (:meth:`counted`) and answer through :meth:`answer`.
    """

    def __init__(self) -> None:
        self.active = 0

    @contextmanager
    def counted(self) -> Iterator[None]:
        """Count one query request while the block runs."""
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def answer(self, work: Callable[[], T], plain: bool) -> T:
        """``work()`` on the event loop when it is a plain query and the only one, else in a
        worker thread."""
        if plain and self.active == 1:
            return work()
        return await run(work)


QUERIES = QueryLoad()


def plain_query(filter: Any, namespace: Any, return_values: Any, return_metadata: Any) -> bool:
    """Whether a vector query needs nothing but the graph (see :class:`QueryLoad`)."""
    return filter is None and namespace is None and not return_values and return_metadata in ("none", None, False)


async def run(func: Callable[..., T], *args: Any) -> T:
    """Run blocking work (database, model) in the worker-thread pool."""
    return await anyio.to_thread.run_sync(func, *args)


async def open_index(request: Request, name: str) -> Index:
    """The index ``name``; an already-open one without a thread hop (the hot path of every query).

    ``Database.index`` takes the database's write lock, which a long upsert holds, so a first open
    (or a miss) runs in a worker thread rather than on the event loop.
    """
    db = state(request).db
    cached = getattr(db, "_indexes", {}).get(name)  # a plain dict read: safe without the lock
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    return await run(db.index, name)


async def read_body(request: Request) -> bytes:
    """The raw body (the size limit is enforced by the body-limit middleware while it streams in)."""
    return await request.body()


async def read_json(request: Request, *, check_media_type: bool = True, what: str = "request body") -> Any:
    """Parse the body as JSON, after checking that the ``Content-Type`` says JSON (else 415)."""
    if check_media_type:
        ctype = request.headers.get("content-type")
        if not is_json_media_type(ctype):
            raise unsupported_media_type(ctype or "")
    return parse_json(await read_body(request), what=what)


def require_object(body: Any, what: str = "request body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_argument", f"{what} must be a JSON object, got {_json_type(body)}")
    return body


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def as_float_array(values: Any) -> Any:
    """A JSON array of plain numbers as a float64 array; anything else unchanged.

    The core checks list values element by element in Python (~0.8 ms for 384 floats); an array
    takes its vectorised path. Booleans, strings, nulls and nested lists are left as they came, so
    the core rejects them with exactly the error it gives in-process. Used on vectors that arrive as
    JSON; float64 keeps the value as sent until the core's own float32 conversion and range checks.
    """
    if type(values) is not list or not values:
        return values
    for x in values:
        kind = type(x)
        if kind is not float and kind is not int:
            return values
    try:
        return np.array(values, dtype=np.float64)
    except (OverflowError, ValueError):  # integers beyond float64: let the core say so
        return values


def vectors_as_arrays(items: Any) -> Any:
    """:func:`as_float_array` on the ``values`` of each ``{id, values, …}`` object of a write."""
    if type(items) is list:
        for item in items:
            if type(item) is dict and "values" in item:
                item["values"] = as_float_array(item["values"])
    return items


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json_bytes(payload), status_code=status, headers=headers, media_type="application/json")

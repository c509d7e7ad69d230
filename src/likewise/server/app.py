"""The application factory: :func:`create_app` wires the database, auth, models and routes together.

``create_app(path_or_database)`` returns a FastAPI app usable in-process (``TestClient``, any ASGI
server) or through ``likewise serve``. It owns:

* the lifespan: a database opened from a path is closed at shutdown (snapshots written, lock
  released). Every write is committed and synced by the core *before* its response is sent, and
  uvicorn stops accepting, then drains in-flight requests before the lifespan ends, so a graceful
  shutdown loses no acknowledged write;
* two pure-ASGI middlewares (cheaper than ``BaseHTTPMiddleware``): the body-size limit (413 before
  reading when ``Content-Length`` says so, otherwise counted as the body streams in), and
  observation: request id, one JSON access-log line per request (``likewise.access`` logger; no
  headers, no query strings, so never a token), Prometheus metrics, and a last-resort 500;
* exception handlers that render every error in the style of the API it came through: native
  ``{"error": {"code", "message", "details"}}``, Cloudflare's v4 envelope, or OpenAI's error shape;
* ``/healthz``, ``/metrics`` and FastAPI's ``/openapi.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..database import Database
from ..engines import EngineParams
from ..errors import LikewiseError, TooLargeError
from . import cloudflare, explorer, native, openai
from .auth import Authenticator, Token
from .common import NO_RETRY, AppState, authorize, json_response, state
from .errors import ApiError, native_error_body
from .metrics import Metrics
from .models import DEFAULT_MODEL, ModelRegistry
from .routing import FastDispatch, FastRoute, compile_routes, match

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES = 100_000_000  # Vectorize's upload limit
DEFAULT_MAX_BATCH = 5000  # Vectorize's HTTP batch limit

access_log = logging.getLogger("likewise.access")
log = logging.getLogger("likewise.server")


def create_app(
    db_or_path: Database | str | os.PathLike[str],
    *,
    tokens: Iterable[Token] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    embedder_factory: Callable[[str], Any] | None = None,
    default_model: str = DEFAULT_MODEL,
    engine: EngineParams | None = None,
    close_db: bool | None = None,
) -> FastAPI:
    """Build the likewise HTTP app.

    ``db_or_path``: an open :class:`~likewise.Database`, or a data directory to open now (so a locked
    directory fails here, not at the first request). ``close_db`` (default: only when the app opened
    it) closes the database at shutdown. ``tokens`` switch authentication on. ``embedder_factory``
    replaces :class:`likewise.embedders.TextEmbedder` (tests use a fake).
    """
    if isinstance(db_or_path, Database):
        db, owned = db_or_path, False
    else:
        db, owned = Database(Path(db_or_path), engine=engine), True
    st = AppState(
        db=db,
        auth=Authenticator(tokens),
        # No persistent cache for the stateless embedding endpoints (a synced SQLite write per call
        # would dominate their latency); indexes bound to a model use the data directory's cache.
        models=ModelRegistry(embedder_factory, default_model),
        metrics=Metrics(),
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        close_db=owned if close_db is None else close_db,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("likewise server ready on %s (auth %s)", db.path, "on" if st.auth.enabled else "off")
        try:
            yield
        finally:
            if st.close_db:
                db.close()  # writes snapshots and releases the directory lock
                log.info("closed %s", db.path)

    app = LikewiseApp(
        title="likewise",
        version=__version__,
        description="Vector database and embeddings service: native API, Cloudflare Vectorize v2 / "
        "Workers AI and OpenAI embeddings compatibility.",
        lifespan=lifespan,
    )
    app.state.likewise = st
    st.metrics.add_gauge(lambda: _index_gauges(db))

    app.include_router(native.router)
    app.include_router(openai.router)
    app.include_router(cloudflare.router, prefix="/client/v4")
    app.include_router(cloudflare.router, include_in_schema=False)  # base_url without /client/v4
    app.include_router(explorer.router)  # the web explorer at /

    @app.get("/healthz", tags=["ops"], summary="Liveness and readiness")
    async def healthz() -> Response:
        return json_response({"status": "ok", "version": __version__})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        authorize(request, "read")
        return Response(state(request).metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_exception_handler(LikewiseError, _likewise_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    app.add_middleware(ObserveMiddleware, metrics=st.metrics)  # outermost: sees every response
    app.fast_routes = compile_routes(
        [("", native.router), ("", openai.router), ("/client/v4", cloudflare.router), ("", cloudflare.router)]
    )
    app.fast_stack = ObserveMiddleware(BodyLimitMiddleware(FastDispatch(render), max_body_bytes), st.metrics)
    return app


class LikewiseApp(FastAPI):
    """FastAPI, plus a direct path for likewise's own API routes (see :mod:`.routing`).

    A request for one of the API routes goes through likewise's observation and body-limit
    middlewares straight to its endpoint; every other request (docs, the explorer, 404s and 405s,
    lifespan) takes FastAPI's full stack. Both paths log, measure, limit and render errors alike.
    """

    fast_routes: list[FastRoute] = []
    fast_stack: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.fast_stack is not None:
            found = match(self.fast_routes, scope)
            if found is not None:
                scope["app"] = self
                scope["likewise.match"] = found
                await self.fast_stack(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _index_gauges(db: Database) -> Iterable[str]:
    yield "# HELP likewise_index_vectors Vectors in each open index."
    yield "# TYPE likewise_index_vectors gauge"
    for name, index in sorted(getattr(db, "_indexes", {}).items()):  # open ones only: no loading on scrape
        yield f'likewise_index_vectors{{index="{name}"}} {len(index)}'


# -- error rendering -----------------------------------------------------------------------------------


def render(request: Request, exc: LikewiseError) -> Response:
    """Render ``exc`` in the style of the API the request came through."""
    path = request.url.path
    if cloudflare.is_cloudflare_path(path):
        return cloudflare.render_error(request, exc)
    if openai.is_openai_path(path):
        return openai.render_error(request, exc)
    headers: dict[str, str] = {}
    if exc.http_status >= 500 or exc.http_status in (409, 429):
        headers.update(NO_RETRY)
    if exc.http_status == 401:
        headers["www-authenticate"] = "Bearer"
    return json_response(native_error_body(exc), status=exc.http_status, headers=headers or None)


async def _likewise_error(request: Request, exc: LikewiseError) -> Response:
    if exc.http_status >= 500:
        log.error("request failed: %s: %s", exc.code, exc.message)
    return render(request, exc)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        err = ApiError(404, "not_found", f"no route {request.method} {request.url.path}")
    elif exc.status_code == 405:
        err = ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
    else:
        err = ApiError(exc.status_code, "http_error", str(exc.detail))
    response = render(request, err)
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = [{"loc": list(map(str, e.get("loc", ()))), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    message = f"{'.'.join(first['loc'])}: {first['msg']}"
    return render(request, ApiError(422, "invalid_argument", message, errors=errors))


# -- middleware ----------------------------------------------------------------------------------------


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413, before or while they stream in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await _send_error(scope, send, _too_large(declared, limit))
                    return
                break
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(seen, limit)  # rendered by the app's LikewiseError handler
            return message

        await self.app(scope, counted, send)


def _too_large(size: int, limit: int) -> TooLargeError:
    return TooLargeError(
        f"request body is {size:,}+ bytes; the limit is {limit:,} bytes", limit=limit, got=size
    )


async def _send_error(scope: Scope, send: Send, exc: LikewiseError) -> None:
    response = render(Request(scope), exc)
    await response(scope, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class ObserveMiddleware:
    """Request id, JSON access log, metrics, and a JSON 500 for anything unhandled."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = os.urandom(8).hex()
        status = 500
        size = 0
        started = False
        self.metrics.started()

        async def observed(message: Message) -> None:
            nonlocal status, size, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception as exc:
            log.exception("unhandled error (request %s)", request_id)
            if not started:
                err = exc if isinstance(exc, LikewiseError) else ApiError(
                    500, "internal_error", f"internal error; the server log has details (request {request_id})"
                )
                await _send_error(scope, observed, err)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "request_id": request_id,
                            "client": f"{client[0]}:{client[1]}" if client else None,
                            "method": scope["method"],
                            "path": scope["path"],
                            "route": template,
                            "status": status,
                            "bytes": size,
                            "ms": round(elapsed * 1000, 3),
                        },
                        ensure_ascii=False,
                    )
                )


"""Shared fixtures. ``backend`` opens a database through each front door the suite covers.

The conformance suite (tests/conformance) asks for ``db`` and runs once per backend; a backend is a
factory ``(path) -> Database-like``. HTTP and Ray backends join ``BACKENDS`` as they are built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import likewise

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

Factory = Callable[[Path], Any]


def _embedded(path: Path) -> Any:
    return likewise.open(path, engine=likewise.EngineParams(background=False))


def _http(path: Path) -> Any:
    """A real ``likewise`` server on 127.0.0.1 (uvicorn in a thread) and a ``likewise.Client`` to it."""
    from likewise.client import Client
    from likewise.server import create_app
    from likewise.server.testing import ThreadedServer

    server = ThreadedServer(create_app(path, engine=likewise.EngineParams(background=False))).start()
    client = Client(server.url)
    close_client = client.close

    def close() -> None:  # closing the client also stops the server (which closes the database)
        close_client()
        server.stop()

    client.close = close  # type: ignore[method-assign]
    return client


BACKENDS: dict[str, Factory] = {"embedded": _embedded}
try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError:  # the server extra is not installed: the HTTP backend is skipped
    pass
else:
    BACKENDS["http"] = _http


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Factory:
    return BACKENDS[request.param]


@pytest.fixture
def db(backend: Factory, tmp_path: Path) -> Iterator[Any]:
    database = backend(tmp_path / "data")
    yield database
    database.close()

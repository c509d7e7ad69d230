"""Fixtures for the HTTP service: a real server on 127.0.0.1 and a deterministic fake embedder.

Every server test goes over real HTTP (uvicorn in a thread, a free loopback port), so the SDKs and
the client are exercised exactly as users run them. The fake embedder stands in for the text model
(it is fast and needs no weights); the few tests marked ``model`` load the bundled real one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import likewise
from likewise.server import create_app
from likewise.server.testing import FakeEmbedder, ThreadedServer


def fake_factory(model_id: str, **options: Any) -> FakeEmbedder:
    return FakeEmbedder(model_id, **options)


ServerFactory = Callable[..., ThreadedServer]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """``make_server(**create_app_kwargs)`` → a started server on its own data directory."""
    servers: list[ThreadedServer] = []

    def make(**kwargs: Any) -> ThreadedServer:
        kwargs.setdefault("embedder_factory", fake_factory)
        kwargs.setdefault("engine", likewise.EngineParams(background=False))
        app = create_app(tmp_path / f"data{len(servers)}", **kwargs)
        server = ThreadedServer(app).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: ServerFactory) -> ThreadedServer:
    return make_server()


@pytest.fixture
def http(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client

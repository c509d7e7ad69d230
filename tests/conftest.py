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


BACKENDS: dict[str, Factory] = {"embedded": _embedded}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Factory:
    return BACKENDS[request.param]


@pytest.fixture
def db(backend: Factory, tmp_path: Path) -> Iterator[Any]:
    database = backend(tmp_path / "data")
    yield database
    database.close()

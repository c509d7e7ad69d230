"""Fuzzing against the OpenAPI schema (issue #7 point 6) with schemathesis.

schemathesis reads the service's own ``/openapi.json`` and generates requests for every operation
(native, Cloudflare and OpenAI routes alike), in process over ASGI, so thousands of cases fit in
CI. Each case must answer without a 5xx and within 2 s; index routes are pointed at an index that
exists (with vectors and a metadata index) so that cases reach the validators and the engine, not
just the 404. After all cases, the process has not grown by more than ``RSS_BOUND`` and the seeded
index still answers exactly as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

import likewise
from likewise.server import create_app
from likewise.server.testing import FakeEmbedder

from .conftest import scaled

EXAMPLES = scaled(60, 600)  # per operation
RSS_BOUND = scaled(100, 200) << 20  # MiB; the long run also grows hypothesis's own caches
SEEDED = "tv"
PROTECTED = ("DELETE /v1/indexes/{name}", "DELETE /client/v4/accounts/{account_id}/vectorize/v2/indexes/{index_name}")


def _live_rss() -> int:
    """Resident size once garbage is collected and freed heap is handed back to the OS: without
    this, the figure depends on what earlier tests in the same process left for glibc to keep."""
    import gc

    from likewise.engines.hnsw import release_freed_memory

    gc.collect()
    release_freed_memory()
    return int(psutil.Process().memory_info().rss)


class Stats:
    cases = 0
    slowest = 0.0
    rss_before = 0
    statuses: ClassVar[dict[int, int]] = {}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    path: Path = tmp_path_factory.mktemp("schemathesis") / "data"
    # The app gets an open Database, so that lifespan runs (schemathesis's ASGI transport runs its
    # own) do not close it between cases; the fixture closes it at the end.
    db = likewise.open(path, engine=likewise.EngineParams(background=False))
    application = create_app(db, embedder_factory=FakeEmbedder)
    with TestClient(application) as client:
        client.post("/v1/indexes", json={"name": SEEDED, "dimensions": 3})
        client.post("/v1/indexes/tv/upsert", json={"vectors": [
            {"id": f"v{i}", "values": [1, i, 2], "metadata": {"g": f"x{i % 3}", "n": i}} for i in range(20)]})
        client.post("/v1/indexes/tv/metadata_indexes", json={"property_name": "g", "index_type": "string"})
        Stats.rss_before = _live_rss()
        yield application
    db.close()


@pytest.fixture(scope="module")
def operations(app: Any) -> dict[str, Any]:
    # schemathesis's own pytest integration does not run under pytest 9 yet ('_nodeid'), so the
    # cases are drawn with Hypothesis directly from each operation's strategy.
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in loaded.get_all_operations())}
    return ops


def _fuzz_one(op: Any) -> None:
    label = f"{op.method.upper()} {op.path}"

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        if label not in PROTECTED:
            for key in ("name", "index_name"):  # reach the validators behind an existing index
                if key in (case.path_parameters or {}):
                    case.path_parameters[key] = SEEDED
        began = time.monotonic()
        response = case.call()
        elapsed = time.monotonic() - began
        Stats.cases += 1
        Stats.slowest = max(Stats.slowest, elapsed)
        Stats.statuses[response.status_code] = Stats.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
        assert elapsed < 2.0, f"{label} took {elapsed:.2f} s"

    run()


def test_no_5xx_no_hang(operations: dict[str, Any]) -> None:
    """Every operation of /openapi.json, EXAMPLES generated cases each (protected ones last)."""
    assert len(operations) >= 30, sorted(operations)
    failures: list[str] = []
    for label in sorted(operations, key=lambda name: (name in PROTECTED, name)):
        try:
            _fuzz_one(operations[label])
        except AssertionError as exc:  # go on: one report with every failing operation
            failures.append(f"{label}: {str(exc).splitlines()[0][:400]}")
    assert not failures, "\n".join(failures)


def test_fuzz_totals(app: Any, record_property: Any) -> None:
    """Runs after the fuzz cases (file order): enough cases ran, memory stayed bounded, data intact."""
    grown = _live_rss() - Stats.rss_before
    print(f"schemathesis: {Stats.cases} cases, slowest {Stats.slowest * 1000:.0f} ms, RSS grew "
          f"{grown / 2**20:.0f} MiB, statuses {dict(sorted(Stats.statuses.items()))}")
    record_property("cases", Stats.cases)
    assert Stats.cases >= 1000, f"only {Stats.cases} cases ran"
    assert grown < RSS_BOUND, f"RSS grew by {grown / 2**20:.0f} MiB"
    with TestClient(app) as client:
        r = client.post("/v1/indexes/tv/query", json={"vector": [1, 5, 2], "top_k": 1})
        assert r.status_code == 200, r.text

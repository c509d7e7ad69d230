"""The sharded database as a cluster: placement, auth, shard failure and recovery, batch embedding, HTTP.

All on the session's two-node cluster (``conftest.py``), inside a loopback-only network namespace.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import likewise
import likewise.distributed as lwd
from likewise import errors as E
from likewise.distributed import ShardUnavailableError, shard_of
from likewise.server import create_app
from likewise.server.testing import FakeEmbedder, ThreadedServer

pytestmark = pytest.mark.ray

ENGINE = likewise.EngineParams(background=False)


def test_shards_spread_over_both_nodes(ray_cluster: Any, sharded_db: Any) -> None:
    import ray

    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) == 2 and {n["NodeManagerAddress"] for n in alive} == {"127.0.0.1"}
    status = sharded_db.shard_status()
    assert all(s is not None and s.open for s in status)
    assert len({s.node_id for s in status}) == 2  # one shard per node


def test_token_auth_is_enforced(ray_cluster: Any) -> None:
    """A driver without the cluster's token is refused; ours (which has it) is connected."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
    env["RAY_AUTH_TOKEN"] = "0" * 64
    env["RAY_gcs_server_port_wait_time_s"] = "1"  # one connection attempt, not ~20 s of retries
    code = f"import ray; ray.init(address={ray_cluster.address!r}); print('CONNECTED')"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert "CONNECTED" not in proc.stdout
    assert proc.returncode != 0
    assert "auth" in (proc.stdout + proc.stderr).lower()


def test_reopen_checks_the_manifest_and_attaches(sharded_db: Any) -> None:
    with pytest.raises(E.InvalidArgumentError, match="2 shards"):
        lwd.open(sharded_db.path, shards=3)
    sharded_db.create_index("attach", dimensions=2).upsert([likewise.Vector("a", [1, 0])])
    other = lwd.open(sharded_db.path)  # same named actors: a second coordinator
    assert other.shards == 2 and other.index("attach").get_by_ids(["a"])[0].values == [1.0, 0.0]
    other.close()  # not its actors: they keep serving
    assert sharded_db.index("attach").query([1, 0], top_k=1).ids == ["a"]


def _expected_ids(idx: Any, q: list[float]) -> list[str]:
    return list(idx.query(q, top_k=20).ids)


def test_shard_failure_is_loud_then_recovers_from_disk(ray_cluster: Any, fresh_path: Path) -> None:
    import ray

    db = lwd.open(fresh_path, shards=2, engine=ENGINE)
    try:
        idx = db.create_index("k", dimensions=8, metric="euclidean")
        rng = np.random.default_rng(3)
        ids = [f"k{i}" for i in range(300)]
        idx.upsert_arrays(ids, rng.standard_normal((300, 8)), metadata=[{"i": i} for i in range(300)])
        q = rng.standard_normal(8).tolist()
        expected = _expected_ids(idx, q)
        ranking = idx.query(q, top_k=300).ids
        assert {shard_of(i, 2) for i in expected} == {0, 1}
        before = db.shard_status()[1]

        # 1. Killed mid-query (Ray restarts it): every answer is complete or an error, never partial.
        outcomes: list[Any] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    outcomes.append(_expected_ids(idx, q))
                except ShardUnavailableError as exc:
                    outcomes.append(exc)

        thread = threading.Thread(target=hammer)
        thread.start()
        time.sleep(0.5)
        ray.kill(db.actors[1], no_restart=False)  # returns at once; the process dies soon after
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(isinstance(o, ShardUnavailableError) for o in outcomes):
            time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        thread.join(30)
        errors = [o for o in outcomes if isinstance(o, ShardUnavailableError)]
        answers = [o for o in outcomes if not isinstance(o, ShardUnavailableError)]
        assert errors, "killing a shard must make queries fail loudly"
        assert all(a == expected for a in answers), "a query returned a partial answer silently"
        assert errors[0].http_status == 503 and errors[0].code == "shard_unavailable"
        assert errors[0].details["shards"] == [1]

        after = db.wait_ready(timeout_s=60)[1]
        assert after.pid != before.pid  # a new process, which reloaded the shard from disk
        assert _expected_ids(idx, q) == expected
        assert idx.info().vector_count == 300
        assert idx.get_by_ids(["k7"])[0].metadata == {"i": 7}

        # 2. Dead for good: loud by default; partial only when asked, and flagged.
        ray.kill(db.actors[1], no_restart=True)
        deadline = time.monotonic() + 30
        while True:  # until the kill has landed; until then answers are whole (checked above)
            try:
                assert _expected_ids(idx, q) == expected
            except ShardUnavailableError:
                break
            assert time.monotonic() < deadline, "the killed shard kept answering"
            time.sleep(0.05)
        with pytest.raises(ShardUnavailableError):
            idx.query(q, top_k=20)
        partial = idx.query(q, top_k=20, allow_partial=True)
        assert partial.partial and partial.missing_shards == [1]
        assert partial.ids == [i for i in ranking if shard_of(i, 2) == 0][:20]  # shard 0's own top-20
        assert partial.to_dict()["partial"] is True
        with pytest.raises(ShardUnavailableError):
            idx.upsert_arrays([i for i in ids if shard_of(i, 2) == 1][:1], rng.standard_normal((1, 8)))
        with pytest.raises(ShardUnavailableError):
            idx.info()
        # Through HTTP: 503 with the wire code.
        with ThreadedServer(create_app(db, close_db=False)) as server:
            r = httpx.post(f"{server.url}/v1/indexes/k/query", json={"vector": q, "top_k": 5}, timeout=60)
        assert r.status_code == 503 and r.json()["error"]["code"] == "shard_unavailable"
    finally:
        db.close()

    # 3. Reopened: new actors load both shards from their directories.
    db = lwd.open(fresh_path, engine=ENGINE)
    try:
        idx = db.index("k")
        assert idx.info().vector_count == 300
        assert _expected_ids(idx, q) == expected
    finally:
        db.close()


def _write_rows(path: Path, n: int) -> list[dict[str, Any]]:
    rows = [{"id": i, "text": f"package number {i} does thing {i % 7}", "section": f"s{i % 3}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_embed_dataset_into_sharded_and_embedded(sharded_db: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    model = "sentence-transformers/all-MiniLM-L6-v2"
    factory = functools.partial(FakeEmbedder, model)  # importable, so Ray pickles it by reference
    rows = _write_rows(tmp_path / "rows.jsonl", 300)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    seen: list[lwd.EmbedProgress] = []

    idx = sharded_db.create_index("emb", dimensions=384)
    report = lwd.embed_dataset(
        tmp_path / "rows.jsonl", idx, embedder=factory, actors=2, cpus_per_actor=0.5, batch_size=64,
        write_batch=100, progress=seen.append,
    )
    assert report.rows == 300 and report.actors == 2 and report.mutation == idx.info().processed_up_to_mutation
    assert [p.rows for p in seen][-1] == 300 and len(seen) >= 3
    assert idx.info().vector_count == 300
    got = idx.get_by_ids(["17"])[0]
    assert got.metadata == {"section": "s2"}
    assert np.allclose(got.values, FakeEmbedder(model).embed_batch([rows[17]["text"]])[0], atol=1e-6)
    assert idx.texts(["17"]) == {"17": rows[17]["text"]}

    with likewise.open(tmp_path / "embedded", engine=ENGINE) as edb:
        eidx = edb.create_index("emb", dimensions=384)
        report = lwd.embed_dataset(
            tmp_path / "rows.parquet", eidx, embedder=factory, actors=1, cpus_per_actor=0.5, progress=None
        )
        assert report.rows == 300 and eidx.info().vector_count == 300
        q = FakeEmbedder(model).embed_batch([rows[42]["text"]])[0]
        assert eidx.query(q, top_k=5).ids == idx.query(q, top_k=5).ids
        assert idx.query(q, top_k=1).ids == ["42"]


def test_serve_a_sharded_database_over_http(sharded_db: Any) -> None:
    from likewise.client import Client

    with ThreadedServer(create_app(sharded_db, close_db=False)) as server:
        client = Client(server.url)
        remote = client.create_index("web", dimensions=3, metric="dot-product")
        vectors = [likewise.Vector(f"w{i}", [float(i), 1.0, -float(i % 3)], {"i": i}) for i in range(40)]
        remote.upsert(vectors)
        direct = sharded_db.index("web")
        q = [0.5, 1.0, 0.25]
        assert remote.query(q, top_k=7).ids == direct.query(q, top_k=7).ids
        assert remote.info().vector_count == 40
        assert remote.info().processed_up_to_mutation == direct.info().processed_up_to_mutation
        assert remote.list_vectors(count=10).total_count == 40
        client.close()

"""``likewise.Client`` specifics beyond the conformance suite: binary writes, batching, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import likewise
from likewise import errors as E
from likewise.server.errors import ApiError


def test_numpy_writes_travel_binary_and_match_the_embedded_database(server: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = [
        likewise.Vector(f"v{i}", rng.standard_normal(6), {"i": i} if i % 2 else None, "ns" if i % 3 else None)
        for i in range(25)
    ]
    with likewise.Client(server.url, batch_size=10) as client, likewise.open(tmp_path / "local") as db:
        remote, local = client.create_index("b", dimensions=6), db.create_index("b", dimensions=6)
        for idx in (remote, local):
            idx.upsert(vectors)  # the client sends 3 binary requests of <= 10 rows
            idx.insert([likewise.Vector("v0", np.zeros(6) + 1), likewise.Vector("new", np.arange(6.0))])
            idx.upsert_arrays([f"a{i}" for i in range(12)], rng.standard_normal((12, 6)).astype(np.float32))
        ids = [f"v{i}" for i in range(25)] + ["new"] + [f"a{i}" for i in range(12)]
        assert remote.get_by_ids(ids)[:26] == local.get_by_ids(ids)[:26]
        assert remote.info().vector_count == local.info().vector_count == 38
        q = rng.standard_normal(6)
        assert remote.query(q, top_k=10, namespace="ns").ids == local.query(q, top_k=10, namespace="ns").ids
        bad = [likewise.Vector("x", np.array([1.0, np.nan, 0, 0, 0, 0]))]
        for idx in (remote, local):
            with pytest.raises(E.NonFiniteValueError):
                idx.upsert(bad)
            with pytest.raises(E.DimensionMismatchError):
                idx.upsert([likewise.Vector("x", np.ones(5))])
            with pytest.raises(E.InvalidVectorTypeError):
                idx.upsert([likewise.Vector("x", [1, 2, "3", 4, 5, 6])])
            with pytest.raises(E.InvalidArgumentError):
                idx.upsert_arrays(["a", "b"], np.ones((3, 6)))
        assert len(remote) == 38


def test_client_errors_and_extras(server: Any) -> None:
    with likewise.Client(server.url) as client:
        with pytest.raises(E.IndexNotFoundError):
            client.index("missing")
        with pytest.raises(E.InvalidArgumentError):
            client.create_index("x", dimensions=3, embedder=object())
        assert client.health()["status"] == "ok"
        vec = client.embed("hello", model="BAAI/bge-small-en-v1.5")
        assert vec.shape == (384,) and vec.dtype == np.float32
        assert client.embed(["a", "b"], model="BAAI/bge-small-en-v1.5").shape == (2, 384)
        idx = client.create_index("texts", dimensions=384)
        idx.upsert_arrays(["a", "b"], client.embed(["a", "b"], model="BAAI/bge-small-en-v1.5"))
        assert idx.query_text("b", top_k=1, model="BAAI/bge-small-en-v1.5").ids == ["b"]
        with pytest.raises(E.InvalidArgumentError):
            idx.query_text("b")  # the index has no model of its own, as in-process
        assert repr(idx) == "RemoteIndex(name='texts', dimensions=384, metric='cosine')"
    with likewise.Client("http://127.0.0.1:9", timeout=2) as dead, pytest.raises(ApiError) as err:
        dead.list_indexes()
    assert (err.value.http_status, err.value.code) == (503, "connection_error")


def test_record_indexes_work_remotely(tmp_path: Path) -> None:
    from likewise.embedders import RecordEmbedder
    from likewise.server import create_app
    from likewise.server.testing import ThreadedServer

    cities = {"paris": {"lat": 48.85, "lon": 2.35}, "lyon": {"lat": 45.76, "lon": 4.84}, "oslo": {"lat": 59.91, "lon": 10.75}}
    db = likewise.open(tmp_path / "d", engine=likewise.EngineParams(background=False))
    emb = RecordEmbedder({"lat": "number", "lon": "number"}, scaling="none").fit(list(cities.values()))
    db.create_index("cities", embedder=emb)
    with ThreadedServer(create_app(db)) as server, likewise.Client(server.url) as client:
        idx = client.index("cities")
        idx.upsert_records([(k, v, {"name": k}) for k, v in cities.items()])
        res = idx.query_record({"lat": 48.0, "lon": 3.0}, top_k=2, return_metadata="all")
        assert res.ids == ["paris", "lyon"] and res.matches[0].metadata == {"name": "paris"}
        with pytest.raises(E.InvalidArgumentError):
            idx.upsert_images([("x", "/etc/passwd")])
    assert db.index("cities").info().vector_count == 3  # the app did not close a database it was given
    db.close()


def test_client_reads_index_descriptions_of_newer_servers() -> None:
    from likewise.client import _index_config

    config = _index_config({"name": "a", "dimensions": 3, "metric": "cosine", "added_later": {"x": 1}})
    assert (config.name, config.dimensions, config.embedder) == ("a", 3, None)

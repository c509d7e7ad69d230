"""The conformance suite against the sharded backend, plus its "same answers" checks.

The suite's test functions are imported from tests/conformance and run here with this directory's
``db`` fixture (a 2-shard database on the 2-node cluster): exact search must answer exactly as the
brute-force oracle, hence as the embedded index. Then: shard by shard and merged, the sharded answers
equal the embedded index's (ids, order and scores) for every metric and filters; and with ANN on
every shard, recall@10 against exact search is at least 0.95.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import likewise

pytestmark = pytest.mark.ray

_path = Path(__file__).resolve().parent.parent / "conformance" / "test_index_conformance.py"
_spec = importlib.util.spec_from_file_location("likewise_conformance_for_ray", _path)
assert _spec is not None and _spec.loader is not None
conformance = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conformance)
for _name in dir(conformance):
    if _name.startswith("test_"):
        globals()[_name] = getattr(conformance, _name)  # collected here, with this directory's ``db``

make_vectors = conformance.make_vectors
DIM = conformance.DIM


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_same_answers_as_embedded(db: Any, tmp_path: Path, metric: str) -> None:
    vectors = make_vectors(400, seed=5, namespaces=True)
    sharded = db.create_index("same", dimensions=DIM, metric=metric)
    sharded.upsert(vectors)
    sharded.create_metadata_index("genre", "string")
    with likewise.open(tmp_path / "embedded", engine=likewise.EngineParams(background=False)) as edb:
        embedded = edb.create_index("same", dimensions=DIM, metric=metric)
        embedded.upsert(vectors)
        embedded.create_metadata_index("genre", "string")
        rng = np.random.default_rng(7)
        cases: list[dict[str, Any]] = [
            {},
            {"filter": {"genre": {"$in": ["drama", "news"]}}},
            {"filter": {"year": {"$gte": 1990}}, "namespace": "odd"},
            {"return_values": True, "return_metadata": "all"},
            {"return_metadata": "indexed"},
        ]
        for case in cases:
            for _ in range(4):
                q = rng.standard_normal(DIM).tolist()
                want = embedded.query(q, top_k=12, **case)
                got = sharded.query(q, top_k=12, **case)
                assert got.ids == want.ids
                assert [m.score for m in got.matches] == pytest.approx([m.score for m in want.matches], rel=1e-5)
                assert [(m.metadata, m.namespace) for m in got.matches] == [
                    (m.metadata, m.namespace) for m in want.matches
                ]
                assert not got.partial
        assert sharded.query_by_id("v9", top_k=5).ids == embedded.query_by_id("v9", top_k=5).ids
        assert sharded.info().vector_count == embedded.info().vector_count == 400
        assert sharded.list_vectors(count=1000).vectors == embedded.list_vectors(count=1000).vectors


def test_ann_recall_against_exact(db: Any) -> None:
    """Each shard holds ~3,000 vectors (> ann_threshold=1,000): its graph answers; recall@10 ≥ 0.95."""
    rng = np.random.default_rng(11)
    n, dim = 6000, 32
    centres = rng.standard_normal((60, dim)).astype(np.float32)
    data = centres[rng.integers(0, 60, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    ids = [f"a{i}" for i in range(n)]
    idx = db.create_index("ann", dimensions=dim, metric="cosine")
    for start in range(0, n, 2000):
        idx.upsert_arrays(ids[start : start + 2000], data[start : start + 2000])
    idx.optimize()  # every vector into each shard's HNSW graph
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    queries = centres[rng.integers(0, 60, 50)] + 0.3 * rng.standard_normal((50, dim)).astype(np.float32)
    hits = 0
    for q in queries:
        exact = np.argsort(-(unit @ (q / np.linalg.norm(q))), kind="stable")[:10]
        got = idx.query(q, top_k=10).ids
        hits += len({ids[i] for i in exact} & set(got))
    plans = [p for p in db._shards.all("last_plan", "ann")[0].values()]
    assert all(p is not None and p.method == "hnsw" for p in plans), plans
    assert hits / (10 * len(queries)) >= 0.95

"""The ANN path against exact search: recall@10 on clustered data, unfiltered and filtered, and the planner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import likewise

N, DIM, QUERIES = 20_000, 48, 100


def clustered(n: int, seed: int) -> np.ndarray:
    """Clusters on a 12-d subspace of the 48-d space, like real embeddings (low intrinsic dimension).

    Base and query sets share the centres and the projection; ``seed`` draws the points.
    """
    rng = np.random.default_rng(seed)
    proj = np.random.default_rng(12345).standard_normal((12, DIM)).astype(np.float32)
    centres = np.random.default_rng(54321).standard_normal((100, 12)).astype(np.float32)
    z = centres[rng.integers(0, 100, n)] + 0.5 * rng.standard_normal((n, 12)).astype(np.float32)
    x = z @ proj + 0.05 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[likewise.Index, np.ndarray, np.ndarray]:
    path = tmp_path_factory.mktemp("recall") / "d"
    # Exact search only for sets under 1,000 and no copies of queried sets: this tests the ANN path.
    params = likewise.EngineParams(
        background=False, ann_threshold=5000, exact_max_candidates=1000, exact_sqrt_factor=0.0, rows_cache_fraction=0.0
    )
    db = likewise.open(path, engine=params)
    idx = db.create_index("recall", dimensions=DIM)
    x = clustered(N, 0)
    cats = np.arange(N) % 100  # category c holds 1% of the vectors; c < 10 holds 10%
    for s in range(0, N, 2000):
        idx.upsert_arrays(
            [f"v{i}" for i in range(s, s + 2000)], x[s : s + 2000], metadata=[{"c": int(c)} for c in cats[s : s + 2000]]
        )
    idx.optimize()
    yield idx, x, cats
    db.close()


def recall(idx: likewise.Index, x: np.ndarray, queries: np.ndarray, mask: np.ndarray | None, flt: dict | None) -> float:
    hits = 0
    for q in queries:
        scores = x @ q
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        truth = {f"v{i}" for i in np.argsort(-scores)[:10]}
        got = idx.query(q, top_k=10, filter=flt).ids
        hits += len(truth & set(got))
    return hits / (10 * len(queries))


def test_ann_recall_unfiltered(loaded: tuple[likewise.Index, np.ndarray, np.ndarray]) -> None:
    idx, x, _ = loaded
    queries = clustered(QUERIES, 99)
    assert recall(idx, x, queries, None, None) >= 0.95
    assert idx._engine.last_plan is not None and idx._engine.last_plan.method == "hnsw"


def test_ann_recall_filtered_10_percent(loaded: tuple[likewise.Index, np.ndarray, np.ndarray]) -> None:
    idx, x, cats = loaded
    queries = clustered(QUERIES, 98)
    flt = {"c": {"$lt": 10}}
    assert recall(idx, x, queries, cats < 10, flt) >= 0.95
    assert idx._engine.last_plan is not None and idx._engine.last_plan.method == "hnsw"
    res = idx.query(queries[0], top_k=10, filter=flt, return_metadata="all")
    assert all(m.metadata["c"] < 10 for m in res.matches)


def test_selective_filter_is_exact(loaded: tuple[likewise.Index, np.ndarray, np.ndarray]) -> None:
    idx, x, cats = loaded
    queries = clustered(20, 97)
    assert recall(idx, x, queries, cats == 7, {"c": 7}) == 1.0
    assert idx._engine.last_plan is not None and idx._engine.last_plan.method == "exact"


def test_upserts_and_deletes_after_indexing_stay_correct(tmp_path: Path) -> None:
    with likewise.open(tmp_path / "d", engine=likewise.EngineParams(background=False, ann_threshold=1000)) as db:
        idx = db.create_index("churn", dimensions=DIM)
        x = clustered(4000, 1)
        idx.upsert_arrays([f"v{i}" for i in range(4000)], x)
        idx.optimize()
        idx.delete_by_ids([f"v{i}" for i in range(0, 4000, 2)])
        idx.upsert_arrays(["v1"], x[:1])  # replaced: v1 now sits where v0 was
        assert idx.info().vector_count == 2000
        assert idx.query(x[0], top_k=1).ids == ["v1"]
        assert "v2" not in idx.query(x[2], top_k=10).ids
        idx.optimize()  # compaction: half of the positions are dead
        assert idx._engine.dead == 0 and idx._engine.count == 2000
        assert idx.query(x[3], top_k=1).ids == ["v3"]


@pytest.mark.parametrize("factor", [1.0, 37.0, 1e-3, 1e20, 1e-20])
def test_graph_query_of_any_length_ranks_and_scores_as_its_unit_vector(
    loaded: tuple[likewise.Index, np.ndarray, np.ndarray], factor: float
) -> None:
    # Cosine scores do not depend on the query's length, also where its square leaves float32's
    # range (1e20, 1e-20), and a list of floats is the same query as the array.
    idx, x, _ = loaded
    for q in clustered(20, 97):
        unit = idx.query(q, top_k=10)
        assert idx._engine.last_plan is not None and idx._engine.last_plan.method == "hnsw"
        got = idx.query((q * np.float32(factor)).astype(np.float32), top_k=10)
        assert got.ids == unit.ids
        expected = x[[int(i[1:]) for i in got.ids]] @ q
        assert np.allclose([m.score for m in got.matches], expected, atol=1e-5)
        as_list = idx.query([float(v) * factor for v in q], top_k=10)
        assert as_list.ids == unit.ids

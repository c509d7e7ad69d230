"""The conformance suite: what every backend (embedded, HTTP, Ray) must answer identically.

Only the public interface is used. Results are checked against a brute-force numpy oracle and the
plain-Python filter semantics, so a backend cannot pass by agreeing with itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from likewise import Vector
from likewise import errors as E
from likewise.filters import matches, parse_filter

DIM = 8
GENRES = ["sitcom", "horror", "drama", "news"]


def make_vectors(n: int, seed: int = 0, namespaces: bool = False) -> list[Vector]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        meta: dict[str, Any] = {"genre": GENRES[i % 4], "year": 1950 + (i * 7) % 75, "rank": i}
        if i % 3 == 0:
            meta["streaming"] = {"netflix": bool(i % 2)}
        out.append(
            Vector(
                id=f"v{i}",
                values=rng.standard_normal(DIM).astype(np.float32).tolist(),
                metadata=meta,
                namespace=("even" if i % 2 == 0 else "odd") if namespaces else None,
            )
        )
    return out


def oracle(vectors: list[Vector], q: list[float], metric: str, k: int, flt: Any = None, ns: str | None = None) -> list[str]:
    parsed = parse_filter(flt)
    pool = [v for v in vectors if matches(parsed, v.metadata) and (ns is None or v.namespace == ns)]
    if not pool:
        return []
    m = np.array([v.values for v in pool], dtype=np.float64)
    qq = np.array(q, dtype=np.float64)
    if metric == "cosine":
        s = -(m @ qq) / (np.linalg.norm(m, axis=1) * np.linalg.norm(qq))
    elif metric == "dot-product":
        s = -(m @ qq)
    else:
        s = np.linalg.norm(m - qq, axis=1)
    order = np.argsort(s, kind="stable")[:k]
    return [pool[i].id for i in order]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_query_matches_brute_force(db: Any, metric: str) -> None:
    idx = db.create_index("shows", dimensions=DIM, metric=metric)
    vectors = make_vectors(200)
    idx.upsert(vectors)
    rng = np.random.default_rng(1)
    for _ in range(10):
        q = rng.standard_normal(DIM).tolist()
        res = idx.query(q, top_k=7)
        assert res.count == 7
        assert res.ids == oracle(vectors, q, metric, 7)
        scores = [m.score for m in res.matches]
        assert scores == sorted(scores, reverse=(metric == "cosine"))


def test_scores_follow_vectorize(db: Any) -> None:
    idx = db.create_index("cos", dimensions=2, metric="cosine")
    idx.upsert([Vector("a", [1, 0]), Vector("b", [0, 2])])
    res = idx.query([1, 0], top_k=2)
    assert res.matches[0].id == "a" and res.matches[0].score == pytest.approx(1.0)
    assert res.matches[1].score == pytest.approx(0.0, abs=1e-6)
    euc = db.create_index("euc", dimensions=2, metric="euclidean")
    euc.upsert([Vector("a", [3, 4]), Vector("b", [0, 1])])
    res = euc.query([0, 0], top_k=2)
    assert [m.id for m in res.matches] == ["b", "a"]
    assert [m.score for m in res.matches] == pytest.approx([1.0, 5.0])
    dot = db.create_index("dot", dimensions=2, metric="dot-product")
    dot.upsert([Vector("a", [10, 0]), Vector("b", [1, 0])])
    res = dot.query([1, 0], top_k=2)
    assert [m.id for m in res.matches] == ["a", "b"]
    assert [m.score for m in res.matches] == pytest.approx([-10.0, -1.0])


@pytest.mark.parametrize(
    "flt",
    [
        {"genre": "sitcom"},
        {"genre": {"$eq": "horror"}},
        {"genre": {"$ne": "horror"}},
        {"genre": {"$in": ["drama", "news"]}},
        {"genre": {"$nin": ["drama", "news"]}},
        {"year": {"$gte": 1980, "$lt": 2000}},
        {"year": {"$gt": 2010}},
        {"year": {"$lte": 1960}},
        {"genre": "sitcom", "year": {"$gte": 1990}},
        {"streaming.netflix": True},
        {"streaming.netflix": {"$ne": True}},
        {"genre": {"$gte": "h", "$lt": "i"}},
        {"missing": {"$eq": None}},
        {"rank": {"$in": [3, 5, 7, 1000]}},
    ],
)
def test_filtered_query_is_top_k_of_filtered_set(db: Any, flt: dict[str, Any]) -> None:
    idx = db.create_index("shows", dimensions=DIM)
    vectors = make_vectors(300)
    idx.upsert(vectors)
    q = np.random.default_rng(2).standard_normal(DIM).tolist()
    res = idx.query(q, top_k=10, filter=flt, return_metadata="all")
    assert res.ids == oracle(vectors, q, "cosine", 10, flt)
    parsed = parse_filter(flt)
    assert all(matches(parsed, m.metadata) for m in res.matches)


def test_namespaces_partition_search(db: Any) -> None:
    idx = db.create_index("ns", dimensions=DIM)
    vectors = make_vectors(100, namespaces=True)
    idx.upsert(vectors)
    q = vectors[0].values
    res = idx.query(q, top_k=10, namespace="odd", return_metadata="all")
    assert res.ids == oracle(vectors, list(q), "cosine", 10, ns="odd")
    assert all(m.namespace == "odd" for m in res.matches)
    assert idx.query(q, top_k=10, namespace="nowhere").count == 0
    both = idx.query(q, top_k=10, namespace="even", filter={"genre": "drama"})
    assert both.ids == oracle(vectors, list(q), "cosine", 10, {"genre": "drama"}, ns="even")


def test_insert_keeps_and_upsert_replaces(db: Any) -> None:
    idx = db.create_index("iu", dimensions=2)
    idx.insert([Vector("a", [1, 0], {"v": 1})])
    idx.insert([Vector("a", [0, 1], {"v": 2}), Vector("b", [1, 1])])
    got = {v.id: v for v in idx.get_by_ids(["a", "b"])}
    assert got["a"].metadata == {"v": 1} and got["a"].values == [1.0, 0.0]
    idx.upsert([Vector("a", [0, 1], {"w": 3})])
    a = idx.get_by_ids(["a"])[0]
    assert a.metadata == {"w": 3} and a.values == [0.0, 1.0]  # fully replaced, not merged
    assert idx.info().vector_count == 2
    assert idx.query([0, 1], top_k=1).ids == ["a"]
    assert idx.query([0, 1], top_k=2, filter={"v": 1}).count == 0


def test_read_after_write_and_delete(db: Any) -> None:
    idx = db.create_index("raw", dimensions=DIM)
    vectors = make_vectors(50)
    for v in vectors:
        idx.upsert([v])
        assert idx.query(v.values, top_k=1).ids == [v.id]
    idx.delete_by_ids(["v1", "v2", "nope"])
    assert idx.info().vector_count == 48
    assert idx.get_by_ids(["v1", "v2", "v3"])[0].id == "v3"
    res = idx.query(vectors[1].values, top_k=48)
    assert "v1" not in res.ids and res.count == 48


def test_get_by_ids_returns_values_metadata_namespace(db: Any) -> None:
    idx = db.create_index("get", dimensions=3)
    idx.upsert([Vector("x", [0.5, 0.25, 0.125], {"a": {"b": [1, "two"]}}, "ns1")])
    (v,) = idx.get_by_ids(["x", "missing"])
    assert v == Vector("x", [0.5, 0.25, 0.125], {"a": {"b": [1, "two"]}}, "ns1")


def test_query_by_id(db: Any) -> None:
    idx = db.create_index("qid", dimensions=DIM)
    vectors = make_vectors(40)
    idx.upsert(vectors)
    res = idx.query_by_id("v7", top_k=3)
    assert res.ids[0] == "v7"
    assert res.ids == oracle(vectors, list(vectors[7].values), "cosine", 3)
    with pytest.raises(E.VectorNotFoundError):
        idx.query_by_id("nope")


def test_return_options(db: Any) -> None:
    idx = db.create_index("ret", dimensions=2)
    idx.upsert([Vector("a", [1, 0], {"genre": "x" * 100, "n": 1}, "ns")])
    idx.create_metadata_index("genre", "string")
    bare = idx.query([1, 0], top_k=1).matches[0]
    assert bare.values is None and bare.metadata is None
    full = idx.query([1, 0], top_k=1, return_values=True, return_metadata="all").matches[0]
    assert full.values == [1.0, 0.0] and full.metadata == {"genre": "x" * 100, "n": 1} and full.namespace == "ns"
    indexed = idx.query([1, 0], top_k=1, return_metadata="indexed").matches[0]
    assert indexed.metadata == {"genre": "x" * 64}


def test_list_vectors_paginates_over_a_snapshot(db: Any) -> None:
    idx = db.create_index("lst", dimensions=2)
    idx.upsert([Vector(f"id{i:03d}", [1, i]) for i in range(25)])
    page = idx.list_vectors(count=10)
    assert page.count == 10 and page.is_truncated and page.total_count == 25
    seen = list(page.vectors)
    idx.upsert([Vector("id999", [1, 1])])  # after the first page: not part of this iteration
    while page.next_cursor:
        page = idx.list_vectors(count=10, cursor=page.next_cursor)
        seen += page.vectors
    assert seen == [f"id{i:03d}" for i in range(25)]
    assert idx.list_vectors(count=1000).total_count == 26
    with pytest.raises(E.InvalidArgumentError):
        idx.list_vectors(count=0)
    with pytest.raises(E.InvalidCursorError):
        idx.list_vectors(cursor="garbage")


def test_metadata_indexes(db: Any) -> None:
    idx = db.create_index("mi", dimensions=2)
    idx.create_metadata_index("genre", "string")
    idx.create_metadata_index("year", "number")
    assert [(m.property_name, m.index_type) for m in idx.list_metadata_indexes()] == [
        ("genre", "string"),
        ("year", "number"),
    ]
    idx.delete_metadata_index("year")
    assert [m.property_name for m in idx.list_metadata_indexes()] == ["genre"]
    with pytest.raises(E.MetadataIndexNotFoundError):
        idx.delete_metadata_index("year")
    with pytest.raises(E.InvalidArgumentError):
        idx.create_metadata_index("genre", "date")


def test_index_lifecycle(db: Any) -> None:
    db.create_index("one", dimensions=3, metric="euclidean", description="first")
    db.create_index("two", dimensions=4)
    assert [c.name for c in db.list_indexes()] == ["one", "two"]
    cfg = db.index("one").config
    assert (cfg.dimensions, cfg.metric, cfg.description) == (3, "euclidean", "first")
    with pytest.raises(E.IndexExistsError):
        db.create_index("one", dimensions=3)
    db.delete_index("one")
    with pytest.raises(E.IndexNotFoundError):
        db.index("one")
    db.create_index("one", dimensions=5)  # a deleted name can be reused
    assert db.index("one").info().vector_count == 0


def test_mutation_ids_and_info(db: Any) -> None:
    idx = db.create_index("mut", dimensions=2)
    assert idx.info().processed_up_to_mutation is None
    m1 = idx.upsert([Vector("a", [1, 0])])
    m2 = idx.delete_by_ids(["a"])
    assert isinstance(m1, str) and m1 != m2
    info = idx.info()
    assert info.processed_up_to_mutation == m2 and info.vector_count == 0 and info.dimensions == 2

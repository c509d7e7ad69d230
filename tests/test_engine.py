"""The engine's exact plans against brute force, with positions split between graph and tail.

A query's candidates live in two places (the HNSW graph's storage and the exact tail), deleted
positions are skipped, and candidate sets are cached in two forms (sorted positions or a bitmap).
With the exact planner forced, every answer must equal a brute-force top-k over the living,
filter-passing vectors — whatever the split, the deletions and the order of queries.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from synthetic import clustered, clustered_and_noise

import likewise
from likewise.filters import matches, parse_filter

EXACT = likewise.EngineParams(
    ann_threshold=200, chunk=128, background=False, exact_max_candidates=10**9, snapshot_every=10**9, cells=False
)
FILTERS: list[dict[str, Any] | None] = [
    None, {"g": 1}, {"g": {"$in": [0, 3]}}, {"n": {"$gte": 90}}, {"n": {"$lt": 3}}, {"g": {"$ne": 2}, "n": {"$lt": 50}},
]


def _brute(x: np.ndarray, alive: dict[str, int], meta: list[dict[str, Any]], q: np.ndarray, flt: Any, k: int) -> list[str]:
    parsed = parse_filter(flt)
    ids = [vid for vid, row in alive.items() if parsed is None or matches(parsed, meta[row])]
    d = np.array([float(np.sum((x[alive[i]] - q) ** 2)) for i in ids])
    order = np.lexsort((np.arange(len(ids)), d))[:k]
    return [ids[i] for i in order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_plans_equal_brute_force(tmp_path: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1600, 8)).astype(np.float32)
    meta = [{"g": int(i % 5), "n": int(rng.integers(0, 100))} for i in range(len(x))]
    alive: dict[str, int] = {}
    with likewise.open(tmp_path / "d", engine=EXACT) as db:
        idx = db.create_index("e", dimensions=8, metric="euclidean")
        idx.create_metadata_index("g", "number")
        rows = list(range(1000))
        idx.upsert_arrays([f"v{i}" for i in rows], x[rows], metadata=[meta[i] for i in rows])
        alive.update({f"v{i}": i for i in rows})
        idx._engine.flush()  # 1,000 in the graph
        more = list(range(1000, 1300))  # in the tail
        idx.upsert_arrays([f"v{i}" for i in more], x[more], metadata=[meta[i] for i in more])
        alive.update({f"v{i}": i for i in more})
        gone = [f"v{i}" for i in rng.choice(1300, 250, replace=False)]
        idx.delete_by_ids(gone)
        for vid in gone:
            alive.pop(vid)
        again = list(range(1300, 1400))  # re-upserted ids: their old positions are dead
        ids = [f"v{i}" for i in rng.choice(1000, 100, replace=False)]
        idx.upsert_arrays(ids, x[again], metadata=[meta[i] for i in again])
        alive.update(dict(zip(ids, again)))
        assert idx._engine.indexed == 1000 and idx._engine.tail and idx._engine.dead
        for round_ in range(2):  # the second round answers from the candidate cache
            for flt in FILTERS:
                for k in (1, 10, 40):
                    q = x[int(rng.integers(0, len(x)))] + 0.01
                    got = idx.query(q, top_k=k, filter=flt).ids
                    assert got == _brute(x, alive, meta, q, flt, k), (round_, flt, k)


def test_queries_in_parallel_with_writes_and_indexing(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain and filtered queries share the graph; writes, indexing, cell training and compaction
    exclude them. Nothing breaks, and every filtered answer passes its filter."""
    import threading

    from likewise.engines.engine import VectorEngine

    plans: set[str] = set()  # every plan the planner chose (last_plan is shared by the threads)
    choose = VectorEngine._plan_graph

    def recording(self: Any, *args: Any) -> Any:
        plan, work = choose(self, *args)
        plans.add(plan.method)
        return plan, work

    monkeypatch.setattr(VectorEngine, "_plan_graph", recording)

    params = likewise.EngineParams(
        ann_threshold=300, chunk=64, compact_dead_fraction=0.2, snapshot_every=500, cells_min_candidates=50,
        cells_max_share=1.0, exact_max_candidates=100, exact_sqrt_factor=0.0,
    )
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    meta = [{"g": i % 5} for i in range(3000)]
    errors: list[BaseException] = []
    stop = threading.Event()
    with likewise.open(tmp_path / "d", engine=params) as db:
        idx = db.create_index("p", dimensions=16)
        idx.upsert_arrays([f"v{i}" for i in range(500)], x[:500], metadata=meta[:500])

        def reader(seed: int) -> None:
            r = np.random.default_rng(seed)
            try:
                while not stop.is_set():
                    g = int(r.integers(0, 7))
                    # 20% of the vectors (the cells plan), 40% (filtered HNSW), or no filter.
                    flt = {"g": g} if g < 5 else {"g": {"$in": [0, 1]}} if g == 5 else None
                    res = idx.query(x[int(r.integers(0, 3000))], top_k=5, filter=flt)
                    scores = [m.score for m in res.matches]
                    assert all(m.id.startswith("v") for m in res.matches)
                    assert scores == sorted(scores, reverse=True)
                    if flt is not None:
                        allowed = {g} if g < 5 else {0, 1}
                        assert all(int(m.id[1:]) % 5 in allowed for m in res.matches), (flt, res.ids)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        try:
            for s in range(500, 3000, 250):
                idx.upsert_arrays([f"v{i}" for i in range(s, s + 250)], x[s : s + 250], metadata=meta[s : s + 250])
                idx.delete_by_ids([f"v{i}" for i in rng.choice(s, 60, replace=False)])
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[0]
        assert {"hnsw", "cells"} <= plans, plans
        idx.optimize()
        living = {v for v in idx.list_vectors(count=1000).vectors}
        for vid in sorted(living)[:50]:
            i = int(vid[1:])
            assert idx.query(x[i], top_k=1).ids == [vid]
            assert idx.query(x[i], top_k=1, filter={"g": i % 5}).ids == [vid]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_exact_split_across_cores_equals_one_pass(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from likewise.engines import hnsw

    rng = np.random.default_rng(3)
    graph = hnsw.HnswGraph(12, metric)
    graph.add(rng.standard_normal((20000, 12)).astype(np.float32))
    positions = np.sort(rng.choice(20000, 12000, replace=False))
    q = rng.standard_normal(12).astype(np.float32)
    monkeypatch.setattr(hnsw, "_CORES", 1)
    one_d, one_p = graph.exact(q, 10, positions)
    monkeypatch.setattr(hnsw, "_CORES", 3)
    split_d, split_p = graph.exact(q, 10, positions)
    assert split_p.tolist() == one_p.tolist()
    assert np.allclose(split_d, one_d)


# -- the cells plan ------------------------------------------------------------------------------

# The sketch plan comes before the cells, and copies of queried sets would take over from them on
# the second query: these tests are about the cells.
CELLS = likewise.EngineParams(
    ann_threshold=1000, chunk=4096, background=False, snapshot_every=10**9, rows_cache_fraction=0.0, sketches=False
)


def _recall(idx: Any, x: np.ndarray, meta: list[dict[str, Any]], queries: np.ndarray, flt: Any, k: int = 10) -> float:
    parsed = parse_filter(flt)
    keep = np.array([matches(parsed, m) for m in meta])
    found = 0
    for q in queries:
        res = idx.query(q, top_k=k, filter=flt)
        assert idx._engine.last_plan.method == "cells"
        assert all(keep[int(v[1:])] for v in res.ids)  # every result passes the filter
        assert [m.score for m in res.matches] == sorted(m.score for m in res.matches)  # euclidean: nearest first
        d = np.sum((x - q) ** 2, axis=1)
        d[~keep] = np.inf
        truth = {f"v{i}" for i in np.argsort(d)[:k]}
        found += len(truth & set(res.ids))
    return found / (k * len(queries))


def test_cells_plan_finds_the_filtered_neighbours(tmp_path: Any) -> None:
    """A selective filter is answered from the cells nearest the query, with high recall, and
    a filter whose members are all far from the query still gets its k nearest members."""
    x, group = clustered(40000, 16, 5)
    meta = [{"g": int(i % 10), "cluster": int(c)} for i, c in enumerate(group)]
    rng = np.random.default_rng(6)
    with likewise.open(tmp_path / "d", engine=CELLS) as db:
        idx = db.create_index("c", dimensions=16, metric="euclidean")
        idx.upsert_arrays([f"v{i}" for i in range(len(x))], x, metadata=meta)
        idx._engine.flush()
        cells = idx._engine.cells
        assert cells is not None and len(cells) == 40000
        # Trained at 4,096 and 16,384 indexed vectors (each fourfold growth): √16384 cells.
        assert (cells.trained_on, cells.count) == (16384, 128)
        queries = x[rng.choice(len(x), 40, replace=False)] + 0.1
        assert _recall(idx, x, meta, queries, {"g": 3}) >= 0.9  # 10%: 4,000 candidates
        # Members of one data cluster, queried from the others: the scan goes on to far cells.
        picks = rng.choice(len(x), 60, replace=False)
        far = x[picks[group[picks] != 7][:20]] + 0.1
        assert _recall(idx, x, meta, far, {"cluster": 7}) >= 0.9
        plan = idx._engine.last_plan
        assert plan.scanned >= 500 and plan.candidates == int(np.sum(group == 7))


def test_cells_survive_reopen_and_compaction(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from likewise.engines import cells as cells_module

    x, _group = clustered(16000, 16, 8)
    meta = [{"g": int(i % 8)} for i in range(len(x))]
    params = likewise.EngineParams(
        ann_threshold=1000, chunk=1024, background=False, compact_dead_fraction=0.2, cells_min_candidates=500,
        rows_cache_fraction=0.0, sketches=False,
    )
    with likewise.open(tmp_path / "d", engine=params) as db:
        idx = db.create_index("c", dimensions=16, metric="euclidean")
        idx.upsert_arrays([f"v{i}" for i in range(len(x))], x, metadata=meta)
        idx.optimize()
        centroids = idx._engine.cells.centroids.copy()

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("cells were trained again instead of read from the snapshot")

    monkeypatch.setattr(cells_module.Cells, "train", classmethod(no_training))
    with likewise.open(tmp_path / "d", engine=params) as db:
        idx = db.index("c")
        engine = idx._engine
        assert engine.cells is not None and len(engine.cells) == engine.indexed == 16000
        assert np.array_equal(engine.cells.centroids, centroids)
        queries = x[:30] + 0.1
        assert _recall(idx, x, meta, queries, {"g": 2}) >= 0.9
        # Delete 6,000: the engine compacts, keeps the centroids and reassigns the positions.
        idx.delete_by_ids([f"v{i}" for i in range(10000, 16000)])
        idx.optimize()
        assert engine.indexed == 10000 and len(engine.cells) == 10000
        assert np.array_equal(engine.cells.centroids, centroids)
        assert _recall(idx, x[:10000], meta[:10000], queries, {"g": 2}) >= 0.9


def test_cells_nearest_takes_whole_cells_in_order() -> None:
    from likewise.engines.cells import Cells

    rng = np.random.default_rng(9)
    rows = rng.standard_normal((5000, 8)).astype(np.float32)
    cells = Cells.train(rows, "euclidean", 5000)
    cells.extend(rows)
    positions = np.sort(rng.choice(5000, 1500, replace=False))
    groups = cells.group(positions)
    q = rng.standard_normal(8).astype(np.float32)
    assign = cells.assignment(5000)
    order = [c for c in np.argsort(np.sum((cells.centroids - q) ** 2, axis=1), kind="stable") if groups.counts[c]]

    def reference(share: float, floor: int) -> list[int]:
        # Whole cells holding candidates, nearest first: the share of them, then on to the floor.
        need = max(int(np.ceil(share * len(order))), 1)
        want: list[int] = []
        for used, c in enumerate(order):
            if used >= need and len(want) >= floor:
                break
            want.extend(positions[assign[positions] == c].tolist())
        return want

    for share, floor in ((0.0, 300), (0.1, 50), (0.3, 300)):
        assert cells.nearest(q, groups, share, floor).tolist() == reference(share, floor), (share, floor)
    assert cells.nearest(q, groups, 0.0, 2000).tolist() == groups.positions.tolist()  # more than there are


def test_cells_calibration_reads_the_data() -> None:
    """Clustered data needs few cells for its neighbours; structureless data needs many."""
    from likewise.engines.calibration import held_out
    from likewise.engines.cells import Cells

    shares = []
    for rows in clustered_and_noise(20000, 16):
        cells = Cells.train(rows, "euclidean", len(rows))
        cells.extend(rows)
        cells.calibrate(held_out(lambda rows=rows: rows, len(rows), np.arange(0, 20000, 160), "euclidean"))
        assert list(cells.depths) == [10, 20, 50, 100, 200, 500, 1000, 2000]
        assert np.all(np.diff(cells.shares) >= 0) and 0 < cells.shares[0] <= cells.shares[-1] <= 1
        shares.append(cells.share(100))
    assert shares[0] < 0.2 < shares[1], shares


@pytest.mark.parametrize("method", ["cells", "sketch"])
def test_approximate_plans_merge_the_tail_and_skip_the_dead(tmp_path: Any, method: str) -> None:
    """The cells and the sketches cover the graph only: a filter-passing vector still in the tail
    is found exactly, and deleted or replaced vectors never come back."""
    x, _group = clustered(30000, 16, 11)
    meta = [{"g": int(i % 10)} for i in range(len(x))]
    params = CELLS if method == "cells" else replace(CELLS, cells=False, sketches=True)
    with likewise.open(tmp_path / "d", engine=params) as db:
        idx = db.create_index("c", dimensions=16, metric="euclidean")
        idx.upsert_arrays([f"v{i}" for i in range(len(x))], x, metadata=meta)
        idx._engine.flush()
        rng = np.random.default_rng(12)
        gone = [f"v{i}" for i in rng.choice(len(x), 300, replace=False)]
        idx.delete_by_ids(gone)
        for q in x[rng.choice(len(x), 30, replace=False)]:
            target = q + 0.001
            idx.upsert([likewise.Vector("fresh", target.tolist(), {"g": 4})])  # in the tail
            assert idx._engine.tail
            res = idx.query(target, top_k=10, filter={"g": 4})
            assert idx._engine.last_plan.method == method
            assert res.ids[0] == "fresh"
            assert not set(res.ids) & set(gone)
            assert all(v == "fresh" or int(v[1:]) % 10 == 4 for v in res.ids)
            idx.delete_by_ids(["fresh"])


def test_failed_cell_training_is_not_fatal(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells only speed filters up: if training fails, optimize() still completes, filters are
    answered by the other plans, and training is not retried until the graph has grown."""
    from likewise.engines import cells as cells_module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("k-means failed")

    monkeypatch.setattr(cells_module.Cells, "train", classmethod(broken))
    x, _group = clustered(5000, 8, 2)
    with likewise.open(tmp_path / "d", engine=CELLS) as db:
        idx = db.create_index("c", dimensions=8, metric="euclidean")
        idx.upsert_arrays([f"v{i}" for i in range(len(x))], x, metadata=[{"g": i % 2} for i in range(len(x))])
        idx.optimize()
        engine = idx._engine
        assert engine.cells is None and engine.indexed == 5000 and not engine._training_due()
        res = idx.query(x[0], top_k=3, filter={"g": 0})
        assert res.ids[0] == "v0" and engine.last_plan.method in ("exact", "hnsw")


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_exact_rows_split_across_cores_equals_one_pass(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from likewise.engines import hnsw

    rng = np.random.default_rng(4)
    rows = rng.standard_normal((12000, 12)).astype(np.float32)
    q = rng.standard_normal(12).astype(np.float32)
    monkeypatch.setattr(hnsw, "_CORES", 1)
    one_d, one_p = hnsw.exact_rows(q, 10, rows, metric)
    monkeypatch.setattr(hnsw, "_CORES", 3)
    split_d, split_p = hnsw.exact_rows(q, 10, rows, metric)
    assert split_p.tolist() == one_p.tolist()
    assert np.allclose(split_d, one_d, rtol=1e-6)  # faiss blocks rows for some small d: rounding moves
    s = -np.sum((rows - q) ** 2, axis=1) if metric == "euclidean" else rows @ q
    assert set(one_p.tolist()) == set(np.argsort(-s)[:10].tolist())


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_a_filter_queried_again_is_answered_from_a_copy_of_its_rows(tmp_path: Any, metric: str) -> None:
    """The third query in a row of a filter copies its rows; the copy gives the same matches and
    scores as the scattered scan, and a write drops it (a fresh vector that passes is found)."""

    def same(a: Any, b: Any) -> bool:
        return a.ids == b.ids and [m.score for m in a.matches] == pytest.approx([m.score for m in b.matches], rel=1e-6)
    x, _group = clustered(20000, 16, 21)
    meta = [{"g": int(i % 10)} for i in range(len(x))]
    params = likewise.EngineParams(
        ann_threshold=1000, background=False, cells=False, sketches=False, exact_max_candidates=3000
    )
    rng = np.random.default_rng(22)
    queries = x[rng.choice(len(x), 20, replace=False)] + 0.05
    with likewise.open(tmp_path / "d", engine=params) as db:
        idx = db.create_index("c", dimensions=16, metric=metric)
        idx.upsert_arrays([f"v{i}" for i in range(len(x))], x, metadata=meta)
        idx.optimize()
        engine = idx._engine
        first = idx.query(queries[0], top_k=10, filter={"g": 3})
        assert (engine.last_plan.method, engine.last_plan.copy) == ("exact", False)
        assert engine._candidate_cache.rows_bytes == 0
        copied = [idx.query(q, top_k=10, filter={"g": 3}) for q in queries]
        assert (engine.last_plan.method, engine.last_plan.copy) == ("exact", True)
        assert engine._candidate_cache.rows_bytes == 2000 * 16 * 4
        assert same(copied[0], first)
        engine.params = replace(params, rows_cache_fraction=0.0)  # the scattered scan, same sets
        for q, res in zip(queries, copied):
            again = idx.query(q, top_k=10, filter={"g": 3})
            assert not engine.last_plan.copy
            assert same(again, res)
        engine.params = params
        fresh = queries[0] * (100.0 if metric == "dot-product" else 1.0) + 0.001  # the best match by each metric
        idx.upsert([likewise.Vector("fresh", fresh.tolist(), {"g": 3})])
        idx.optimize()
        assert engine._candidate_cache.rows_bytes == 0
        for _ in range(2):
            idx.query(queries[0], top_k=10, filter={"g": 3})
            assert not engine.last_plan.copy
        res = idx.query(queries[0], top_k=10, filter={"g": 3})
        assert engine.last_plan.copy and res.ids[0] == "fresh"
        assert all(v == "fresh" or int(v[1:]) % 10 == 3 for v in res.ids)


def test_copies_of_sets_stay_within_the_fraction(tmp_path: Any) -> None:
    x, _group = clustered(20000, 16, 23)
    params = likewise.EngineParams(
        ann_threshold=1000, background=False, cells=False, sketches=False, exact_max_candidates=3000,
        rows_cache_fraction=0.15,
    )
    with likewise.open(tmp_path / "d", engine=params) as db:
        idx = db.create_index("c", dimensions=16, metric="euclidean")
        idx.upsert_arrays([f"v{i}" for i in range(len(x))], x, metadata=[{"g": int(i % 10)} for i in range(len(x))])
        idx.optimize()
        engine = idx._engine
        for g in range(3):  # each set is 10% of the graph; 15% holds one copy
            for _ in range(3):
                idx.query(x[g], top_k=5, filter={"g": g})
            assert engine.last_plan.copy  # the new copy pushed the older one out
        assert engine._candidate_cache.rows_bytes == 2000 * 16 * 4
        assert idx.query(x[0], top_k=1, filter={"g": 0}).ids == ["v0"]
        assert engine.last_plan.method == "exact" and not engine.last_plan.copy  # back too late for a copy
        for _ in range(2):
            idx.query(x[0], top_k=1, filter={"g": 0})
        assert engine.last_plan.copy  # hot again: copied again
        # Sets queried in turn, more of them than the copies fit: none is copied.
        idx.upsert([likewise.Vector("new", x[0].tolist(), {"g": 0})])  # a write clears the cache
        idx.optimize()
        for _ in range(3):
            for g in range(3):
                idx.query(x[g], top_k=5, filter={"g": g})
                assert not engine.last_plan.copy
        assert engine._candidate_cache.rows_bytes == 0

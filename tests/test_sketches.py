"""Sketches (1-bit codes of the graph's rows) and the sketch plan: codes, the counting select,
the calibration, and the plan end to end in the engine (recall, tail, deletions, reopen,
compaction)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from synthetic import clustered, clustered_and_noise

import likewise
from likewise.engines.calibration import held_out
from likewise.engines.sketches import Sketches
from likewise.filters import matches, parse_filter

SKETCH = likewise.EngineParams(
    ann_threshold=1000, chunk=4096, background=False, snapshot_every=10**9, rows_cache_fraction=0.0, cells=False
)


def test_codes_are_the_signs_of_the_rows_against_the_centre() -> None:
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((50, 70)).astype(np.float32)
    centre = rng.standard_normal(70).astype(np.float32)
    sk = Sketches(centre, 50)
    codes = sk.encode(rows)
    assert codes.shape == (50, 16)  # 70 bits padded to 16 bytes: faiss' kernels for multiples of 8
    bits = np.unpackbits(codes, axis=1)
    assert np.array_equal(bits[:, :70], (rows > centre).astype(np.uint8))
    assert not bits[:, 70:].any()  # padding is zero in every code: it never adds to a distance
    sk.extend(rows[:20])
    sk.extend(rows[20:])
    assert len(sk) == 50 and np.array_equal(sk.codes(50), codes)
    # Hamming distance = dimensions on opposite sides of the centre.
    positions = np.arange(50)
    near = sk.nearest(rows[7], positions, sk.gather(positions), 1)
    assert near.tolist() == [7]


def test_nearest_takes_every_code_tied_at_the_rth_distance() -> None:
    sk = Sketches(np.zeros(64, np.float32), 6)
    rows = -np.ones((6, 64), np.float32)  # all bits clear ...
    for i, flips in enumerate([0, 3, 1, 3, 5, 2]):
        rows[i, :flips] = 1.0  # ... but `flips` of them
    sk.extend(rows)
    positions = np.array([10, 11, 12, 13, 14, 15])
    codes = sk.gather(np.arange(6))
    query = -np.ones(64, np.float32)
    assert sk.nearest(query, positions, codes, 2).tolist() == [10, 12]  # distances 0 and 1
    assert sk.nearest(query, positions, codes, 4).tolist() == [10, 11, 12, 13, 15]  # both at 3
    assert sk.nearest(query, positions, codes, 6) is positions


def test_calibration_follows_the_data() -> None:
    """Clustered rows keep their neighbours at a near Hamming rank; noise needs a far deeper one."""
    reach = []
    for rows in clustered_and_noise(20000, 64):
        sk = Sketches.train(rows[:5000], len(rows))
        sk.extend(rows)
        sk.calibrate(held_out(lambda rows=rows: rows, len(rows), np.arange(0, 20000, 160), "euclidean"))
        assert list(sk.depths) == [10, 20, 50, 100, 200, 500, 1000, 2000]
        assert np.all(np.diff(sk.reach) >= 0) and 0 < sk.reach[0] <= sk.reach[-1] <= 1
        reach.append(sk.reach_for(10, 2000, 20000, floor=0))
    assert reach[0] * 3 < reach[1], reach


def test_reach_for_interpolates_and_holds_its_floor() -> None:
    sk = Sketches(np.zeros(8, np.float32), 100_000, depths=np.array([10.0, 100.0, 1000.0]), reach=np.array([0.01, 0.04, 0.2]))
    assert sk.reach_for(10, 10_000, 100_000, floor=0) == 400  # depth 100: 4% of the candidates
    assert sk.reach_for(10, 10_000, 100_000, floor=500) == 500
    assert 100 < sk.reach_for(10, 31_623, 100_000, floor=0) < 1265  # depth ~31.6: between 1% and 4%
    assert sk.reach_for(10, 500, 100_000, floor=0) == 500  # depth 2,000: past the calibration, all
    assert Sketches(np.zeros(8, np.float32), 10).reach_for(10, 10_000, 100_000, floor=0) == 10_000  # uncalibrated


def test_pack_and_unpack_keep_everything() -> None:
    rows, _ = clustered(3000, 24, 2)
    sk = Sketches.train(rows, 3000)
    sk.extend(rows)
    sk.calibrate(held_out(lambda: rows, 3000, np.arange(0, 3000, 100), "euclidean"))
    back = Sketches.unpack(sk.pack(3000))
    assert np.array_equal(back.centre, sk.centre) and np.array_equal(back.codes(3000), sk.codes(3000))
    assert np.array_equal(back.depths, sk.depths) and np.array_equal(back.reach, sk.reach)
    assert np.array_equal(back.frequencies, sk.frequencies) and len(sk.frequencies) == 24
    assert back.trained_on == 3000


def _truth(x: np.ndarray, q: np.ndarray, keep: np.ndarray, metric: str, k: int) -> tuple[set[int], float]:
    if metric == "euclidean":
        key = np.sum((x - q) ** 2, axis=1)
    elif metric == "cosine":
        key = -(x / np.linalg.norm(x, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    else:
        key = -(x @ q)
    key = np.where(keep, key, np.inf)
    top = np.argsort(key, kind="stable")[:k]
    return {int(i) for i in top}, float(key[top[-1]])


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_sketch_plan_finds_the_filtered_neighbours(tmp_path: Any, metric: str) -> None:
    """A 10% filter is answered by the sketch plan: every result passes, scores are exact, and
    recall against brute force is high. A filter on one data cluster, queried from the others, is
    crowded in one region: it is left to the exact plan, which finds its nearest members."""
    x, group = clustered(30000, 32, 5)
    meta = [{"g": int(i % 10), "cluster": int(c)} for i, c in enumerate(group)]
    rng = np.random.default_rng(6)
    with likewise.open(tmp_path / "d", engine=SKETCH) as db:
        idx = db.create_index("c", dimensions=32, metric=metric)
        idx.upsert_arrays([f"v{i}" for i in range(len(x))], x, metadata=meta)
        idx._engine.flush()
        sketches = idx._engine.sketches
        assert sketches is not None and len(sketches) == 30000 and sketches.calibrated
        picks = rng.choice(len(x), 60, replace=False)
        cases = [
            ({"g": 3}, x[picks[:30]] + 0.1, "sketch"),
            ({"cluster": 7}, x[picks[group[picks] != 7][:20]] + 0.1, "exact"),
        ]
        for flt, queries, method in cases:
            parsed = parse_filter(flt)
            keep = np.array([matches(parsed, m) for m in meta])
            found = 0
            for q in queries:
                res = idx.query(q, top_k=10, filter=flt)
                plan = idx._engine.last_plan
                assert plan.method == method and plan.candidates == keep.sum()
                if method == "sketch":
                    assert 160 <= plan.scanned < plan.candidates
                rows = np.array([int(v[1:]) for v in res.ids])
                assert keep[rows].all()
                want, _ = _truth(x, q, keep, metric, 10)
                found += len(want & set(rows.tolist()))
                # The scores are exact: only which candidates get scored is approximate.
                if metric == "euclidean":
                    exact = np.sqrt(np.sum((x[rows] - q) ** 2, axis=1))
                elif metric == "cosine":
                    exact = (x[rows] @ q) / np.linalg.norm(x[rows], axis=1) / np.linalg.norm(q)
                if metric != "dot-product":
                    assert [m.score for m in res.matches] == pytest.approx(exact, rel=1e-4, abs=1e-5)
            assert found / (10 * len(queries)) >= 0.95, (metric, flt)


def test_sets_the_sketch_plan_answers_are_not_copied(tmp_path: Any) -> None:
    """A repeated filter the sketches answer gets no copy of its rows (the sketches read far
    fewer); a repeated filter they leave to an exact scan (crowded in one region) does."""
    x, group = clustered(30000, 32, 5)
    meta = [{"g": int(i % 10), "cluster": int(c)} for i, c in enumerate(group)]
    params = replace(SKETCH, rows_cache_fraction=0.25)
    with likewise.open(tmp_path / "d", engine=params) as db:
        idx = db.create_index("c", dimensions=32, metric="euclidean")
        idx.upsert_arrays([f"v{i}" for i in range(len(x))], x, metadata=meta)
        idx._engine.flush()
        engine = idx._engine
        for _ in range(4):
            idx.query(x[0] + 0.1, top_k=10, filter={"g": 3})
            assert engine.last_plan.method == "sketch"
        assert engine._candidate_cache.rows_bytes == 0
        far = x[int(np.flatnonzero(group != 7)[0])] + 0.1
        for _ in range(4):
            idx.query(far, top_k=10, filter={"cluster": 7})
        assert (engine.last_plan.method, engine.last_plan.copy) == ("exact", True)
        assert engine._candidate_cache.rows_bytes == int(np.sum(group == 7)) * 32 * 4


def test_spread_tells_a_region_from_a_sample() -> None:
    x, group = clustered(30000, 64, 3)
    sk = Sketches.train(x, len(x))
    sk.extend(x)
    sk.calibrate(held_out(lambda: x, len(x), np.arange(0, 30000, 300), "euclidean"))
    sample = np.arange(3, 30000, 10)
    region = np.flatnonzero(group == 2)
    assert sk.spread(sk.gather(sample)) > 0.95
    assert sk.spread(sk.gather(region)) < 0.5
    assert Sketches(np.zeros(64, np.float32), 1).spread(sk.gather(sample)) == 0.0  # not calibrated


def test_sketches_survive_reopen_and_compaction(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from likewise.engines import sketches as sketches_module

    x, _group = clustered(30000, 64, 8)
    meta = [{"g": int(i % 8)} for i in range(len(x))]
    params = likewise.EngineParams(
        ann_threshold=1000, chunk=1024, background=False, compact_dead_fraction=0.2, rows_cache_fraction=0.0, cells=False
    )
    with likewise.open(tmp_path / "d", engine=params) as db:
        idx = db.create_index("c", dimensions=64, metric="euclidean")
        idx.upsert_arrays([f"v{i}" for i in range(len(x))], x, metadata=meta)
        idx.optimize()
        before = idx._engine.sketches
        assert before is not None
        centre, reach, codes = before.centre.copy(), before.reach.copy(), before.codes(30000).copy()

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("sketches were trained again instead of read from the snapshot")

    monkeypatch.setattr(sketches_module.Sketches, "train", classmethod(no_training))
    with likewise.open(tmp_path / "d", engine=params) as db:
        idx = db.index("c")
        engine = idx._engine
        sk = engine.sketches
        assert sk is not None and len(sk) == engine.indexed == 30000
        assert np.array_equal(sk.centre, centre) and np.array_equal(sk.reach, reach)
        assert np.array_equal(sk.codes(30000), codes)
        res = idx.query(x[5] + 0.01, top_k=5, filter={"g": 5})
        assert engine.last_plan.method == "sketch" and res.ids[0] == "v5"
        # Delete 12,000: the engine compacts, keeps the centre and codes the living rows again.
        idx.delete_by_ids([f"v{i}" for i in range(18000, 30000)])
        idx.optimize()
        sk = engine.sketches
        assert sk is not None and engine.indexed == 18000 and len(sk) == 18000
        assert np.array_equal(sk.centre, centre)
        assert np.array_equal(sk.codes(18000), sk.encode(engine.graph.vectors()))
        res = idx.query(x[13] + 0.01, top_k=5, filter={"g": 5})
        assert engine.last_plan.method == "sketch" and res.ids[0] == "v13"

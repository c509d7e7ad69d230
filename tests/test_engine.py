"""The engine's exact plans against brute force, with positions split between graph and tail.

A query's candidates live in two places (the HNSW graph's storage and the exact tail), deleted
positions are skipped, and candidate sets are cached in two forms (sorted positions or a bitmap).
With the exact planner forced, every answer must equal a brute-force top-k over the living,
filter-passing vectors — whatever the split, the deletions and the order of queries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import likewise
from likewise.filters import matches, parse_filter

EXACT = likewise.EngineParams(
    ann_threshold=200, chunk=128, background=False, exact_max_candidates=10**9, snapshot_every=10**9
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

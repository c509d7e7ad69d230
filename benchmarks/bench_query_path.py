"""Where a plain query's time goes: each step of ``Index.query`` against faiss on the same graph.

Opens an index that benchmarks/bench_core.py kept (``--keep``), or builds one of ``--n`` clustered
vectors, then times, for one fixed query, ``Index.query`` whole and each of its steps (checking
and normalising the vector, the graph search, decoding ids, scores, ``Match`` objects), next to
faiss' own ``search`` on the very same graph. Then the in-process A/B of bench_core (alternating
blocks of varied queries) gives the ratio the QPS goal is about, and the arms time ``Index.query``
with and without the id table's fixed-width copy against faiss on fresh varied queries (a fixed
query stays in cache and hides the misses that the ten ids of a real query cost).

    .venv/bin/python benchmarks/bench_query_path.py --data /tmp/cbrun/likewise-100000 --ef 10

(``/tmp/cbrun/likewise-100000`` is what ``bench_core.py --sizes 100000 --keep --workdir /tmp/cbrun``
leaves.) Without ``--data`` it builds ``--n`` vectors in a temporary folder first.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_core import _likewise_ab

import likewise
from likewise.types import Match, QueryResult


def per_call_us(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def build(path: Path, n: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(max(n // 1000, 1), dim)).astype(np.float32)
    with likewise.open(path) as db:
        idx = db.create_index("bench", dimensions=dim, metric="cosine")
        for start in range(0, n, 10_000):
            m = min(10_000, n - start)
            rows = centers[rng.integers(0, len(centers), m)] + rng.normal(0, 0.3, (m, dim)).astype(np.float32)
            idx.upsert_arrays([str(i) for i in range(start, start + m)], rows)
        idx._engine.flush()


def arms(idx: Any, graph: Any, vectors: np.ndarray, ef: int, blocks: int, rng: np.random.Generator) -> None:
    """Index.query with and without its fixed-width id copy, and faiss, on varied queries (the cache
    misses a real workload has, which one fixed query hides): every arm takes each block of 100
    in turn, the order rotating, and each block is new queries, so no arm gains from another's
    warm cache."""
    engine = idx._engine
    fixed = engine.ids._fixed
    params = faiss.SearchParametersHNSW(efSearch=ef)

    def set_fixed(on: bool) -> None:
        engine.ids._fixed = fixed if on else None

    runs: dict[str, tuple[Callable[[np.ndarray], Any], bool]] = {
        "faiss index.search": (lambda q: graph.index.search(q.reshape(1, -1), 10, params=params)[1][0].tolist(), True),
        "Index.query": (lambda q: [m.id for m in idx.query(q, top_k=10).matches], True),
        "Index.query, ids from offsets and blob": (lambda q: [m.id for m in idx.query(q, top_k=10).matches], False),
    }
    names = list(runs)
    count = blocks * 100 * len(names)
    queries = np.ascontiguousarray(
        vectors[rng.integers(0, len(vectors), count)] + rng.normal(0, 0.01, (count, vectors.shape[1])).astype(np.float32)
    )
    spent = dict.fromkeys(names, 0.0)
    for b in range(blocks):
        for j, name in enumerate(names[b % len(names) :] + names[: b % len(names)]):
            fn, with_fixed = runs[name]
            set_fixed(with_fixed)
            block = queries[(b * len(names) + j) * 100 :][:100]
            t = time.perf_counter()
            for q in block:
                fn(q)
            spent[name] += time.perf_counter() - t
    set_fixed(True)
    base = spent["faiss index.search"]
    print(f"\nArms, {blocks * 100:,} varied queries each, fresh queries per block:\n")
    print("| arm | µs per query | faiss time / arm time |\n|---|---:|---:|")
    for name in names:
        print(f"| {name} | {spent[name] / (blocks * 100) * 1e6:.1f} | {base / spent[name]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="a likewise data folder with the index")
    parser.add_argument("--index", default="bench")
    parser.add_argument("--n", type=int, default=100_000, help="vectors to build when --data is not given")
    parser.add_argument("--ef", type=int, default=10)
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing")
    parser.add_argument("--arm-blocks", type=int, default=60, help="blocks of 100 varied queries per arm")
    args = parser.parse_args()

    data = args.data
    if data is None:
        data = Path(tempfile.mkdtemp(prefix="likewise-query-path-"))
        build(data, args.n, 384)
    db = likewise.open(data, engine=likewise.EngineParams(ef_search=args.ef))
    idx = db.index(args.index)
    engine = idx._engine
    graph = engine.graph
    assert graph is not None and not engine.tail, "the index must be fully indexed"
    rng = np.random.default_rng(1)
    vectors = graph.vectors()
    q = np.ascontiguousarray(vectors[5] + rng.normal(0, 0.01, vectors.shape[1]).astype(np.float32))
    prepared = idx._query_vector(q)
    dist, pos = graph.search(prepared, 10, args.ef, None)
    found = pos.tolist()
    lean = engine.nearest(prepared, 10)
    assert lean is not None
    from_blob = copy.copy(engine.ids)
    from_blob._fixed = None
    params = graph._params[args.ef]
    n = args.number
    steps = {
        "Index.query (whole)": lambda: idx.query(q, top_k=10),
        "  check and normalise the vector": lambda: idx._query_vector(q),
        "  engine.nearest (search, ids, scores)": lambda: engine.nearest(prepared, 10),
        "    graph search (faiss search_c)": lambda: graph.search(prepared, 10, args.ef, None),
        "    10 ids from the fixed-width copy": lambda: engine.ids.take(found, pos),
        "    10 ids from offsets and blob": lambda: from_blob.take(found),
        "    10 scores": lambda: engine._score_list(dist.tolist()),
        "    shared graph lock": lambda: engine._graph_lock.release_shared(engine._graph_lock.acquire_shared()),
        "  10 Match objects and the result": lambda: QueryResult(list(map(Match, *lean))),
        "faiss index.search (the anchor)": lambda: graph.index.search(prepared.reshape(1, -1), 10, params=params),
    }
    print(f"{len(idx):,} vectors, ef {args.ef}, one fixed query, best of 5 × {n:,} calls\n")
    print("| step | µs per call |\n|---|---:|")
    for name, fn in steps.items():
        print(f"| {name} | {per_call_us(fn, n):.2f} |")
    queries = np.ascontiguousarray(
        vectors[rng.integers(0, len(vectors), 2000)] + rng.normal(0, 0.01, (2000, vectors.shape[1])).astype(np.float32)
    )
    ab = _likewise_ab(idx, queries, args.ef, blocks=20, per=100)
    print(
        f"\nIn-process A/B, 2,000 varied queries: Index.query {ab['likewise_us_per_query']:.1f} µs, "
        f"faiss {ab['faiss_us_per_query']:.1f} µs, ratio {ab['ratio']:.2f}×"
    )
    arms(idx, graph, vectors, args.ef, args.arm_blocks, rng)
    db.close()


if __name__ == "__main__":
    main()

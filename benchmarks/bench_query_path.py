"""Where a plain query's time goes: each step of ``Index.query`` against faiss on the same graph.

Opens an index that benchmarks/bench_core.py kept (``--keep``), or builds one of ``--n`` clustered
vectors, then times, for one fixed query, ``Index.query`` whole and each of its steps (checking
and normalising the vector, the graph search, decoding ids, scores, ``Match`` objects), next to
faiss' own ``search`` on the very same graph. Finally the in-process A/B of bench_core (alternating
blocks of varied queries) gives the ratio the QPS goal is about.

    .venv/bin/python benchmarks/bench_query_path.py --data /tmp/cbrun/likewise-100000 --ef 10

(``/tmp/cbrun/likewise-100000`` is what ``bench_core.py --sizes 100000 --keep --workdir /tmp/cbrun``
leaves.) Without ``--data`` it builds ``--n`` vectors in a temporary folder first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="a likewise data folder with the index")
    parser.add_argument("--index", default="bench")
    parser.add_argument("--n", type=int, default=100_000, help="vectors to build when --data is not given")
    parser.add_argument("--ef", type=int, default=10)
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing")
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
    params = graph._params[args.ef]
    n = args.number
    steps = {
        "Index.query (whole)": lambda: idx.query(q, top_k=10),
        "  check and normalise the vector": lambda: idx._query_vector(q),
        "  engine.nearest (search, ids, scores)": lambda: engine.nearest(prepared, 10),
        "    graph search (faiss search_c)": lambda: graph.search(prepared, 10, args.ef, None),
        "    decode 10 ids": lambda: engine.ids.take(found),
        "    10 scores": lambda: engine._score_list(dist.tolist()),
        "    shared graph lock": lambda: engine._graph_lock.release_shared(engine._graph_lock.acquire_shared()),
        "  10 Match objects and the result": lambda: QueryResult(list(map(Match, *lean))),
        "faiss index.search (the anchor)": lambda: graph.index.search(prepared.reshape(1, -1), 10, params=params),
        "reading ids: int(str) x10 (likewise)": lambda: [int(x) for x in engine.ids.take(found)],
        "reading ids: int(np.int64) x10 (faiss)": lambda: [int(x) for x in pos],
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
    db.close()


if __name__ == "__main__":
    main()

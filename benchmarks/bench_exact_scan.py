"""The exact scan of a candidate set: scattered rows against a contiguous copy, on one core or split.

A filtered query whose candidates the planner scans exactly reads their rows from the graph's
storage, one scattered row at a time (``HnswGraph.exact``), or, once the set is queried again,
front to back from the set's contiguous copy (``exact_rows``). Either is split across the cores
above ``PARALLEL_EXACT_MIN`` candidates per core. This measures the four ways at several set sizes,
on the Debian MiniLM vectors when ``bench-data/`` holds them (``bench_filtered.py`` writes them),
else on random unit vectors of the same shape. The sets are every m-th row, like bench_core's
``id % 10`` filters. Median of ``--rounds`` passes over the queries, single queries, one process.

    python benchmarks/bench_exact_scan.py [--queries 300] [--rounds 5] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from likewise.engines import hnsw

HERE = Path(__file__).resolve().parent
K = 10


def load(data: Path) -> tuple[np.ndarray, np.ndarray, str]:
    docs, syn = data / "debian-document-minilm.npy", data / "debian-synopsis-minilm.npy"
    if docs.exists() and syn.exists():
        x, q = np.load(docs).astype(np.float32), np.load(syn).astype(np.float32)
        return x, q, f"{len(x):,} Debian descriptions (MiniLM, 384-d)"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((63_665, 384)).astype(np.float32)
    q = rng.standard_normal((2_000, 384)).astype(np.float32)
    return x, q, "63,665 random vectors (384-d; bench-data/ has no Debian vectors)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parent / "bench-data")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="1000,2000,4000,6400,10000,16000")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    x, q_all, what = load(args.data)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = q_all[np.random.default_rng(1).choice(len(q_all), args.queries, replace=False)]
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    graph = hnsw.HnswGraph(x.shape[1], "cosine")
    graph.index.storage.add(x)  # the scans read the storage only: no graph links are needed
    graph.index.ntotal = len(x)
    cores, threshold = hnsw._CORES, hnsw.PARALLEL_EXACT_MIN

    def timed(fn: object) -> float:
        call = fn  # type: ignore[assignment]
        for q in queries[:20]:
            call(q)  # type: ignore[operator]
        rounds = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for q in queries:
                call(q)  # type: ignore[operator]
            rounds.append((time.perf_counter() - t) / len(queries) * 1e3)
        return statistics.median(rounds)

    lines = [
        f"{what}; {args.queries} queries, k = {K}; {cores} cores; ms per scan, median of {args.rounds} rounds.",
        "",
        "| candidates | scattered, 1 core | scattered, split | copy, 1 core | copy, split | copy speed-up (split) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size in (int(s) for s in args.sizes.split(",")):
        step = max(1, len(x) // size)
        positions = np.arange(3, len(x), step, dtype=np.int64)[:size]
        rows = np.ascontiguousarray(x[positions])
        res = {}
        for split in (False, True):
            hnsw.PARALLEL_EXACT_MIN = 1 if split else 10**12
            res["scattered", split] = timed(lambda q, p=positions: graph.exact(q, K, p))
            res["copy", split] = timed(lambda q, r=rows: hnsw.exact_rows(q, K, r, "cosine"))
        hnsw.PARALLEL_EXACT_MIN = threshold
        lines.append(
            f"| {len(positions):,} | {res['scattered', False]:.3f} | {res['scattered', True]:.3f} | "
            f"{res['copy', False]:.3f} | {res['copy', True]:.3f} | "
            f"{min(res['scattered', False], res['scattered', True]) / min(res['copy', False], res['copy', True]):.2f}× |"
        )
        print(lines[-1], flush=True)
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()

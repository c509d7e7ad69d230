"""Filtered queries from one thread and from two, on a bench_core build (same process, same run).

Shows whether filtered queries run in parallel: the engine prepares a filter's candidates under its
state lock and scores them with the graph held shared, so two threads should approach twice the
single-thread QPS when the scoring (faiss, which releases the GIL) dominates.

    python benchmarks/bench_filter_threads.py --workdir /tmp/cbrun --n 100000

``--workdir`` is bench_core's (``likewise-<n>`` and ``data-<n>-384`` inside, from a kept build).
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np

import likewise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1200)
    args = ap.parse_args()
    db = likewise.open(args.workdir / f"likewise-{args.n}")
    idx = db.index("bench")
    qs = np.load(args.workdir / f"data-{args.n}-384" / "queries.npy")

    def work(first: int, count: int, key: str, mod: int) -> None:
        for i in range(first, first + count):
            idx.query(qs[i % len(qs)], top_k=10, filter={key: i % mod})

    print("| filter | plan | 1 thread QPS | 2 threads QPS | ratio |\n|---|---|---|---|---|")
    for key, mod, name in (("cat10", 10, "10%"), ("cat100", 100, "1%")):
        work(0, 200, key, mod)  # warm the candidate cache
        qps = []
        for threads in (1, 2):
            started = time.perf_counter()
            pool = [threading.Thread(target=work, args=(t * 5000, args.queries // threads, key, mod)) for t in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            qps.append(args.queries / (time.perf_counter() - started))
        plan = idx._engine.last_plan.method  # benchmark-only peek at the planner
        print(f"| {name} | {plan} | {qps[0]:,.0f} | {qps[1]:,.0f} | {qps[1] / qps[0]:.2f}× |")
    db.close()


if __name__ == "__main__":
    main()

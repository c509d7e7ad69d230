"""The sketch plan against the cells plan on one of bench_core's kept builds, in one process.

Where both apply (a set of 2,000 up to 18·√(k·n) candidates whose calibrated share is small), the
planner tries the sketches first. This measures that choice: the same index (a likewise build
that ``bench_core.py --keep`` left in its workdir, with its data folder), the same queries and
bench_core's filters (``cat10 == i % 10`` or ``cat100 == i % 100``), answered with the cells only
(``sketches=False``), with the sketches only (``cells=False``), and unfiltered, in alternating
rounds. Reports single-query QPS per round and its median, and recall@10 against brute force over
the filtered rows.

    python benchmarks/bench_plans.py --build /tmp/cbrun/likewise-100000 --data /tmp/cbrun/data-100000-384 \
        [--field cat10] [--rounds 6] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import likewise

K = 10


@dataclass
class Row:
    plan: str  # the plans the setting used, with counts
    recall: float | None
    qps: list[float] = field(default_factory=list)  # one per round


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", type=Path, required=True, help="a likewise data directory kept by bench_core")
    ap.add_argument("--data", type=Path, required=True, help="its bench_core data folder (base.f32, queries.npy)")
    ap.add_argument("--field", choices=["cat10", "cat100"], default="cat10")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--recall-queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    args = ap.parse_args()

    meta = json.loads((args.data / "meta.json").read_text())
    n, dim = int(meta["n"]), int(meta["dim"])
    queries = np.load(args.data / "queries.npy")[: args.queries].astype(np.float32)
    mod = 10 if args.field == "cat10" else 100

    db = likewise.open(args.build)
    idx = db.index("bench")
    engine = idx._engine  # benchmark-only: switch plans through EngineParams
    t = time.perf_counter()
    idx.optimize()  # train whatever this build lacks (the sketches, for builds older than them)
    prepare_s = time.perf_counter() - t
    base = engine.params
    settings = {
        "cells": dataclasses.replace(base, sketches=False),
        "sketches": dataclasses.replace(base, cells=False),
    }

    # Recall against brute force (cosine, bench_core's metric) on the first queries.
    rows = np.fromfile(args.data / "base.f32", dtype=np.float32).reshape(n, dim)
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    truth = []
    for i, q in enumerate(queries[: args.recall_queries]):
        members = np.arange(i % mod, n, mod)
        scores = unit[members] @ (q / np.linalg.norm(q))
        truth.append({int(j) for j in members[np.argsort(-scores)[:K]]})
    del rows, unit

    report: dict[str, Row] = {}
    for name, params in settings.items():
        engine.params = params
        found, plans = 0, Counter[str]()
        for i, want in enumerate(truth):
            res = idx.query(queries[i], top_k=K, filter={args.field: i % mod})
            plan = engine.last_plan
            plans[plan.method if plan is not None else "?"] += 1
            found += len(want & {int(m.id) for m in res.matches})
        report[name] = Row(", ".join(f"{m} {c}" for m, c in plans.items()), found / (K * len(truth)))
    report["unfiltered"] = Row("hnsw", None)

    for _ in range(args.rounds):
        for name, row in report.items():
            engine.params = settings.get(name, base)
            t = time.perf_counter()
            for i, q in enumerate(queries):
                idx.query(q, top_k=K, filter=None if name == "unfiltered" else {args.field: i % mod})
            row.qps.append(len(queries) / (time.perf_counter() - t))
    engine.params = base
    db.close()

    head = (
        f"{n:,} × {dim} (`{args.build}`), filter `{args.field} == i % {mod}`, {len(queries)} queries, "
        f"{args.rounds} alternating rounds, k = {K}; optimize() before timing {prepare_s:.1f} s."
    )
    lines = [
        head,
        "",
        "| plans allowed | plan used | recall@10 | QPS per round | median QPS | / unfiltered |",
        "|---|---|---|---|---|---|",
    ]
    unfiltered = statistics.median(report["unfiltered"].qps)
    for name, r in report.items():
        med = statistics.median(r.qps)
        rounds = ", ".join(f"{x:,.0f}" for x in r.qps)
        recall = "" if r.recall is None else f"{r.recall:.3f}"
        lines.append(f"| {name} | {r.plan} | {recall} | {rounds} | {med:,.0f} | {med / unfiltered:.2f}× |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

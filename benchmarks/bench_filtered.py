"""Filtered search on real embeddings: recall and speed of each plan, filters that follow the data.

bench_core's filters (``id % 10``) are spread evenly over the vector space. Real filters are not:
a Debian package's section (games, science, libs, …) goes with what its description says, so the
members of a section sit together and a query can be near them or far from all of them. This
benchmark indexes the MiniLM embeddings of the Debian descriptions (``benchmarks/corpus.py``) with
their section as metadata, then queries with the embedding of a package's one-line synopsis and a
section filter of two kinds:

* ``own``: the package's own section (the query is among the members);
* ``other``: a random other section of the same size class (the query is far from the members);
* ``tenth``: not a section but a field ``tenth = row % 10``, a 10% filter that follows nothing
  (every query has members near it), as bench_core's filters;
* ``hot``: ``tenth = 3`` for every query: one filter an application repeats (a tenant, a
  category), the case the copies of queried sets are for.

For each plan (the planner with and without the sketches, ``sketch`` wherever it applies, ``cells``
at several scan sizes, ``hnsw`` filtered, ``exact`` over scattered rows or over the set's contiguous
copy) it reports recall@10 against exact search over the section, and
single-query QPS, all in one process and one run. Recall is given twice: by id, and counting ties
(a result whose score equals the exact 10th score to 1e-6 counts), since 7% of the descriptions
are exact duplicates of another one and a returned twin is a miss by id only.

    python benchmarks/bench_filtered.py [--queries 1000] [--out docs/benchmarks-filtered.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import likewise

K = 10


def load(data: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from corpus import embed_all
    from corpus import load as load_packages

    packages = load_packages(data / "debian.jsonl")
    docs = embed_all(packages, "document", data / "debian-document-minilm.npy")
    syn = embed_all(packages, "synopsis", data / "debian-synopsis-minilm.npy")
    return docs.astype(np.float32), syn.astype(np.float32), [p.section for p in packages]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parent / "bench-data", help="corpus.py's output folder")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--shares", default="1.0", help="cells_max_share values to try besides the default (1.0: cells whenever they apply)")
    ap.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    args = ap.parse_args()

    docs, syn, sections = load(args.data)
    n = len(docs)
    counts = Counter(sections)
    # Sections where the cells plan applies: more than 2·scan members and at most 25% of the index.
    usable = sorted(s for s, c in counts.items() if 2000 < c <= 0.25 * n)
    rng = np.random.default_rng(7)
    own_pool = [i for i, s in enumerate(sections) if s in usable]
    picks = rng.choice(own_pool, args.queries, replace=False)
    queries = {
        "own": [(int(i), ("section", sections[i])) for i in picks],
        "other": [(int(i), ("section", str(rng.choice([s for s in usable if s != sections[i]])))) for i in picks],
        "tenth": [(int(i), ("tenth", int(i) % 10)) for i in picks],
        "hot": [(int(i), ("tenth", 3)) for i in picks],
    }
    member: dict[tuple[str, Any], np.ndarray] = {("section", s): np.array([x == s for x in sections]) for s in usable}
    member.update({("tenth", t): np.arange(n) % 10 == t for t in range(10)})

    with tempfile.TemporaryDirectory() as tmp:
        db = likewise.open(Path(tmp) / "d")
        idx = db.create_index("debian", dimensions=docs.shape[1], metric="cosine")
        t0 = time.perf_counter()
        for start in range(0, n, 5000):
            stop = min(n, start + 5000)
            idx.upsert_arrays(
                [str(i) for i in range(start, stop)],
                docs[start:stop],
                metadata=[{"section": sections[i], "tenth": i % 10} for i in range(start, stop)],
            )
        idx.create_metadata_index("section", "string")
        idx.create_metadata_index("tenth", "number")
        idx.optimize()
        build_s = time.perf_counter() - t0
        engine = idx._engine  # benchmark-only: switch plans through EngineParams
        base = engine.params
        cells = engine.cells
        calibration = (
            f"{cells.count} cells; share of cells to read by depth: "
            + ", ".join(f"{int(d)}: {x:.3f}" for d, x in zip(cells.depths, cells.shares))
            if cells is not None
            else "no cells"
        )
        sketches = engine.sketches
        calibration += (
            "; sketches: share of the candidates to score by depth: "
            + ", ".join(f"{int(d)}: {x:.3f}" for d, x in zip(sketches.depths, sketches.reach))
            if sketches is not None
            else "; no sketches"
        )
        unit = docs / np.linalg.norm(docs, axis=1, keepdims=True)

        def truth(qi: int, flt: tuple[str, Any]) -> tuple[set[str], float]:
            q = syn[qi] / np.linalg.norm(syn[qi])
            s = unit @ q
            s[~member[flt]] = -np.inf
            top = np.argsort(-s, kind="stable")[:K]
            return {str(j) for j in top}, float(s[top[-1]])

        truths = {kind: [truth(qi, s) for qi, s in qs] for kind, qs in queries.items()}
        # Copies of sets' rows stay in the candidate cache across settings; every setting but the
        # planner's own and the copy's turns them off, and the sketches with them.
        plain = replace(base, rows_cache_fraction=0.0, sketches=False)
        plans: list[tuple[str, Any]] = [
            ("planner (defaults)", base),
            ("planner, no sketches", replace(base, sketches=False)),
            ("planner, no sketches or copies", plain),
            ("sketches wherever they apply", replace(base, cells=False, rows_cache_fraction=0.0, sketch_sqrt_factor=1e9)),
        ]
        plans += [(f"cells, max share {x}", replace(plain, cells_max_share=float(x))) for x in args.shares.split(",") if x]
        plans += [("hnsw filtered (ef 1.2·k/sel)", replace(plain, cells=False, exact_max_candidates=0, exact_sqrt_factor=0.0))]
        plans += [("exact, scattered rows", replace(plain, cells=False, exact_max_candidates=10**9))]
        plans += [("exact, contiguous copy", replace(base, cells=False, sketches=False, exact_max_candidates=10**9))]
        rows: list[dict[str, Any]] = []
        unfiltered = []
        for qi, _ in queries["own"]:
            t = time.perf_counter()
            idx.query(syn[qi], top_k=K)
            unfiltered.append(time.perf_counter() - t)
        for name, params in plans:
            engine.params = params
            for kind, qs in queries.items():
                # Warm the candidate cache (one entry per filter), then time.
                for field, value in {f for _, f in qs}:
                    idx.query(syn[0], top_k=K, filter={field: value})
                found, tied, times, methods = 0, 0, [], Counter()
                for (qi, (field, value)), (want, kth) in zip(qs, truths[kind]):
                    t = time.perf_counter()
                    res = idx.query(syn[qi], top_k=K, filter={field: value})
                    times.append(time.perf_counter() - t)
                    plan = engine.last_plan
                    methods[plan.method + (" (copy)" if plan.copy else "")] += 1
                    found += len(want & set(res.ids))
                    tied += sum(m.score >= kth - 1e-6 for m in res.matches)
                rows.append({
                    "plan": name, "kind": kind,
                    "method": ", ".join(f"{m} {c / len(qs):.0%}" if len(methods) > 1 else m for m, c in methods.most_common()),
                    "recall": found / (K * len(qs)), "recall_ties": tied / (K * len(qs)),
                    "qps": len(qs) / sum(times), "p50_ms": statistics.median(times) * 1e3,
                })
                print(rows[-1], flush=True)
        engine.params = base
        db.close()

    unf_qps = len(unfiltered) / sum(unfiltered)
    lines = [
        "| setting | filter | plan used | recall@10 | with ties | QPS | p50 ms | QPS / unfiltered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['plan']} | {r['kind']} | {r['method']} | {r['recall']:.3f} | {r['recall_ties']:.3f} | {r['qps']:,.0f} | {r['p50_ms']:.2f} | {r['qps'] / unf_qps:.2f}× |"
        )
    report = "\n".join([
        (f"{n:,} Debian descriptions (MiniLM, 384-d, cosine); {args.queries} synopsis queries; "
        f"sections used: {', '.join(f'{s} ({counts[s]:,})' for s in usable)}; build {build_s:.0f} s; "
        f"unfiltered {unf_qps:,.0f} QPS (ef {base.ef_search}). Calibration: {calibration}."),
        "",
        *lines,
    ])
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()

"""Retrieval quality on the Debian task: keyword, vector and hybrid search against plain baselines.

    python benchmarks/corpus.py                      # once: corpus embeddings (cached)
    python benchmarks/bench_retrieval.py --queries 2000 --tune 1000

Task (no one here wrote it): query = a package's one-line synopsis; document = the rest of its
description; the relevant document = that package. Compared in the same run:

* ``bm25s`` alone (English stopwords), a plain MiniLM + numpy exact pipeline, and a plain reciprocal
  rank fusion of the two (top-100 each, k = 60) — the anchors of docs/benchmarks.md;
* likewise ``search`` in ``keyword`` (SQLite FTS5 BM25), ``vector`` and ``hybrid`` modes.

The hybrid weight ``alpha`` is chosen on a *tuning* split of queries disjoint from the reported
test split, so the reported numbers are not tuned on the test queries. Query vectors are embedded
once (cached) and fed to likewise through a thin embedder, so both pipelines see identical vectors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import DATA, embed_all, load  # noqa: E402

import likewise  # noqa: E402
from likewise.search import _normalise, search  # noqa: E402


def metrics(ranked: list[list[int]], truth: list[int]) -> tuple[float, float]:
    recall = mrr = 0.0
    for r, t in zip(ranked, truth):
        top = r[:10]
        if t in top:
            recall += 1
            mrr += 1 / (top.index(t) + 1)
    return recall / len(truth), mrr / len(truth)


class Precomputed:
    """A stand-in embedder that returns the cached MiniLM vector of known query texts."""

    def __init__(self, texts: list[str], matrix: np.ndarray) -> None:
        self.lookup = {t: i for i, t in enumerate(texts)}
        self.matrix = matrix
        self.dimensions = matrix.shape[1]
        self.model_id = "sentence-transformers/all-MiniLM-L6-v2"

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        return self.matrix[[self.lookup[t] for t in texts]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write results as JSON here")
    ap.add_argument("--ingest", type=int, default=2000,
                    help="packages written as Markdown files for the end-to-end ingest timing (0: skip)")
    args = ap.parse_args()

    packages = load()
    docs = embed_all(packages, "document", DATA / "debian-document-minilm.npy")
    syns = embed_all(packages, "synopsis", DATA / "debian-synopsis-minilm.npy")
    n = len(packages)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n)
    test_q = order[: args.queries].tolist()
    tune_q = order[args.queries : args.queries + args.tune].tolist()
    print(f"{n} documents; {len(test_q)} test queries, {len(tune_q)} tuning queries", flush=True)

    # -- anchors -----------------------------------------------------------------------------------
    import bm25s

    t0 = time.perf_counter()
    corpus_tokens = bm25s.tokenize([p.document for p in packages], stopwords="en", show_progress=False)
    bm = bm25s.BM25()
    bm.index(corpus_tokens, show_progress=False)
    bm_build = time.perf_counter() - t0

    def bm25_rank(qs: list[int], k: int = 100) -> list[list[int]]:
        toks = bm25s.tokenize([packages[q].synopsis for q in qs], stopwords="en", show_progress=False)
        res, _ = bm.retrieve(toks, k=k, show_progress=False, n_threads=1)
        return [list(map(int, row)) for row in res]

    def dense_rank(qs: list[int], k: int = 100) -> list[list[int]]:
        out = []
        for q in qs:
            s = docs @ syns[q]
            top = np.argpartition(-s, k)[:k]
            out.append(top[np.argsort(-s[top])].tolist())
        return out

    def rrf(a: list[list[int]], b: list[list[int]], k: int = 60) -> list[list[int]]:
        out = []
        for ra, rb in zip(a, b):
            score: dict[int, float] = {}
            for r in (ra, rb):
                for rank, d in enumerate(r):
                    score[d] = score.get(d, 0.0) + 1 / (k + rank + 1)
            out.append(sorted(score, key=lambda d: -score[d]))
        return out

    results: dict[str, dict[str, float]] = {}
    bm_test, dense_test = bm25_rank(test_q), dense_rank(test_q)
    for name, ranked in (("bm25s", bm_test), ("MiniLM + numpy", dense_test), ("plain RRF (k=60)", rrf(bm_test, dense_test))):
        r, m = metrics(ranked, test_q)
        results[name] = {"recall@10": r, "mrr@10": m}

    # -- likewise --------------------------------------------------------------------------------
    tmp = Path(tempfile.mkdtemp(prefix="likewise-retrieval-"))
    db = likewise.open(tmp / "data", synchronous="NORMAL")
    idx = db.create_index("debian", dimensions=docs.shape[1], metric="cosine")
    t0 = time.perf_counter()
    for s in range(0, n, 1000):
        part = packages[s : s + 1000]
        idx.upsert_arrays(
            [str(i) for i in range(s, s + len(part))],
            docs[s : s + len(part)],
            metadata=[{"section": p.section, "name": p.name} for p in part],
            texts=[p.document for p in part],
        )
    idx.optimize()
    load_s = time.perf_counter() - t0
    idx._embedder = Precomputed([p.synopsis for p in packages], syns)

    def candidates(qs: list[int]) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
        """One hybrid search per query returning its whole candidate union with both scores.

        Every mode and every alpha is then ranked from the same candidates, with likewise's own
        normalisation (``likewise.search._normalise``): keyword top-10 = the union by BM25 (it holds
        the keyword top-100), vector top-10 = the union by cosine (it holds the vector top-100).
        """
        out = []
        for q in qs:
            res = search(idx, packages[q].synopsis, mode="hybrid", top_k=1000, snippets=False)
            ids = [int(h.id) for h in res.hits]
            out.append((ids, np.array([h.vector_score for h in res.hits]), np.array([h.keyword_score for h in res.hits])))
        return out

    def rank(cands: list[tuple[list[int], np.ndarray, np.ndarray]], mode: str, alpha: float = 0.5) -> list[list[int]]:
        ranked = []
        for ids, cos, kw in cands:
            if not ids:
                ranked.append([])
                continue
            score = {"vector": cos, "keyword": kw}.get(mode)
            if score is None:
                score = alpha * _normalise(cos) + (1 - alpha) * _normalise(kw)
            order = np.lexsort((np.arange(len(ids)), -score))[:10]
            ranked.append([ids[i] for i in order])
        return ranked

    t0 = time.perf_counter()
    tune_c = candidates(tune_q)
    test_c = candidates(test_q)
    print(f"candidates for {len(tune_q) + len(test_q)} queries in {time.perf_counter() - t0:.0f} s", flush=True)
    grid = [round(a, 2) for a in np.arange(0.1, 0.91, 0.05)]
    tuning = {a: metrics(rank(tune_c, "hybrid", a), tune_q) for a in grid}
    for a in grid:
        print(f"tune alpha={a}: recall {tuning[a][0]:.3f} mrr {tuning[a][1]:.3f}", flush=True)
    best = max(grid, key=lambda a: tuning[a][0] + tuning[a][1])
    for mode in ("keyword", "vector", "hybrid"):
        r, m = metrics(rank(test_c, mode, best), test_q)
        results[f"likewise {mode}" + (f" (alpha={best})" if mode == "hybrid" else "")] = {"recall@10": r, "mrr@10": m}
    latencies = {}
    for mode in ("keyword", "vector", "hybrid"):  # end-to-end latency of the public call, snippets on
        lat = []
        for q in test_q[:200]:
            t = time.perf_counter()
            search(idx, packages[q].synopsis, mode=mode, top_k=10, alpha=best)
            lat.append(time.perf_counter() - t)
        latencies[mode] = (float(np.percentile(lat, 50)) * 1000, float(np.percentile(lat, 99)) * 1000)

    ingest_report = ingest_end_to_end(packages, args.ingest, args.seed) if args.ingest else None

    print()
    print("| system | recall@10 | MRR@10 |")
    print("|---|---|---|")
    for name, v in results.items():
        print(f"| {name} | {v['recall@10']:.3f} | {v['mrr@10']:.3f} |")
    print()
    print("| likewise search mode (200 queries, snippets on) | p50 ms | p99 ms |")
    print("|---|---|---|")
    for mode, (p50, p99) in latencies.items():
        print(f"| {mode} | {p50:.2f} | {p99:.2f} |")
    print(f"\nbm25s index build {bm_build:.1f} s; likewise load (vectors + texts + HNSW) {load_s:.1f} s "
          f"({n / load_s:.0f} docs/s, embeddings precomputed)")
    print(f"alpha chosen on the tuning split: {best} (grid {grid[0]}..{grid[-1]})")
    if ingest_report:
        print("end-to-end ingest (read, chunk, embed with the bundled MiniLM on CPU, store; cold cache): "
              f"{ingest_report['files']} files, {ingest_report['chunks']} chunks in {ingest_report['seconds']:.1f} s "
              f"= {ingest_report['chunks_per_second']:.1f} chunks/s")
    if args.out:
        Path(args.out).write_text(json.dumps({"results": results, "latency_ms": latencies, "alpha": best,
                                               "tuning": {str(k): v for k, v in tuning.items()},
                                               "ingest": ingest_report}, indent=2))
    db.close()
    shutil.rmtree(tmp, ignore_errors=True)


def ingest_end_to_end(packages: list, count: int, seed: int) -> dict[str, float]:
    """``likewise.ingest`` of ``count`` packages written as Markdown files, from nothing to searchable."""
    rng = np.random.default_rng(seed + 1)
    chosen = rng.choice(len(packages), size=min(count, len(packages)), replace=False)
    tmp = Path(tempfile.mkdtemp(prefix="likewise-ingest-"))
    try:
        docs = tmp / "docs"
        docs.mkdir()
        for i in chosen.tolist():
            p = packages[i]
            (docs / f"{p.name}.md").write_text(f"# {p.name}\n\n{p.synopsis}.\n\n{p.document}\n")
        db = likewise.open(tmp / "data")
        idx = db.create_index("docs", model="sentence-transformers/all-MiniLM-L6-v2")
        report = likewise.ingest(idx, [docs])
        db.close()
        return {"files": report.files, "chunks": report.chunks, "seconds": report.seconds,
                "chunks_per_second": report.chunks_per_second}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

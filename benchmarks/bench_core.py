#!/usr/bin/env python3
"""The core benchmark of issue 2: likewise against raw faiss, chromadb and lancedb, in one run.

Run with its own venv (never the project venv)::

    python3 -m venv .venv-corebench
    .venv-corebench/bin/pip install -e . chromadb lancedb psutil
    .venv-corebench/bin/python benchmarks/bench_core.py --sizes 100000,1000000 \
        --out benchmarks/results/core.json

What it measures, per size and per system (k = 10, 384-d, inner product on unit vectors):

* **build** (one subprocess per system): ingest in batches of 1,000, durable, until the last batch
  returns (vectors/s); then the time until the ANN index is complete (likewise ``idx.optimize()``,
  lancedb ``create_index``, raw faiss its ``add`` calls; chroma builds during ``add``); peak RSS of
  the ingesting process; size of the directory on disk.
* **tune** (one subprocess per system): the recall/QPS curve over the search-effort knob
  (likewise ``EngineParams(ef_search=...)``, faiss ``efSearch``, lancedb ``nprobes``/``ef``), to find
  the smallest setting with recall@10 >= 0.95. Chroma's ``ef_search`` only takes effect at
  collection creation, so it is fixed at build (``--chroma-ef``).
* **serve** (a fresh subprocess per system and round; rounds interleave the systems): open the
  directory and answer the first query (timed), warm up, then one query per call for every query:
  unfiltered, filtered at 10% (``cat10 == q % 10``) and at 1% (``cat100 == q % 100``): QPS, p50,
  p99, recall@10 against the exact (filtered) top-10, and whether every result passes the filter;
  RSS after open and after all queries. The serving process never loads the data set, so its RSS is
  the system's own.

Data: synthetic clustered unit vectors of low intrinsic dimension (a 32-d latent space with 1,000
Gaussian clusters, projected to 384-d plus a little isotropic noise, normalised), generated in
seeded blocks so that a smaller size is a prefix of a larger one. Queries are fresh draws with
another seed. Ground truth is exact (numpy, blocked matmul). ``--corpus DOCS.npy QUERIES.npy`` runs
the same on real embeddings instead, e.g. the MiniLM vectors of the Debian descriptions (documents)
and of their synopses (queries) that ``benchmarks/bench_filtered.py`` writes to ``bench-data/``.

The numbers are written to ``--out`` (JSON) after every step, so a run cut short keeps what it has.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

K = 10
BATCH = 1000
LATENT = 32
CENTRES = 1000
SEED = 20261127
GEN_BLOCK = 100_000
M = 16
EF_CONSTRUCTION = 128
EF_DEFAULT = 64  # likewise's default ef_search; raw faiss is reported at the same ef
EF_SWEEP = [10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
TARGET_RECALL = 0.95
CHROMA_EFS = [10, 16, 24, 32, 48, 64, 100, 200]
HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ------------------------------------------------------------------------------------------ data


def _latent_model(dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((CENTRES, LATENT)).astype(np.float32)
    proj = (rng.standard_normal((LATENT, dim)) / math.sqrt(LATENT)).astype(np.float32)
    return centres, proj


def _draw(
    m: int, dim: int, rng: np.random.Generator, centres: np.ndarray, proj: np.ndarray
) -> np.ndarray:
    c = rng.integers(0, CENTRES, m)
    z = centres[c] + np.float32(0.5) * rng.standard_normal((m, LATENT), dtype=np.float32)
    x = z @ proj + np.float32(0.05) * rng.standard_normal((m, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_corpus(docs: Path, queries: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real data set: the rows of ``docs`` (.npy, n x dim) and those of ``queries`` (.npy, the
    same or other texts' embeddings), both as unit float32 vectors."""
    out = []
    for path in (docs, queries):
        x = np.load(path).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out.append(np.ascontiguousarray(x))
    return out[0], out[1]


def make_data(
    workdir: Path, n: int, dim: int, nq: int, corpus: tuple[Path, Path] | None = None
) -> dict[str, Any]:
    """Write base.f32 (n x dim), queries.npy and gt.npz under ``workdir/data-<n>``; reuse if present.

    With ``corpus`` (documents .npy, queries .npy), the base is every document and the queries are
    ``nq`` rows of the queries file picked at random (seeded), instead of synthetic draws.
    """
    d = workdir / (f"data-corpus-{n}-{dim}" if corpus else f"data-{n}-{dim}")
    meta_path = d / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("nq") == nq:
            return meta
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if corpus:
        base, pool = load_corpus(*corpus)
        assert base.shape == (n, dim), f"the corpus is {base.shape}, expected ({n}, {dim})"
        base.tofile(d / "base.f32")
        queries = pool[np.sort(np.random.default_rng([SEED, 3]).choice(len(pool), nq, replace=False))]
        del base, pool
    else:
        centres, proj = _latent_model(dim)
        with open(d / "base.f32", "wb") as fh:
            for b, s in enumerate(range(0, n, GEN_BLOCK)):
                m = min(GEN_BLOCK, n - s)
                fh.write(_draw(m, dim, np.random.default_rng([SEED, 1, b]), centres, proj).tobytes())
        queries = _draw(nq, dim, np.random.default_rng([SEED, 2]), centres, proj)
    np.save(d / "queries.npy", queries)
    t_gen = time.perf_counter() - t0

    t0 = time.perf_counter()
    qi = np.arange(nq)
    q10, q100 = qi % 10, qi % 100
    best = {
        name: (np.full((nq, K), -np.inf, np.float32), np.full((nq, K), -1, np.int64))
        for name in ("all", "c10", "c100")
    }
    block = 50_000
    for s in range(0, n, block):
        x = read_rows(d / "base.f32", dim, s, min(block, n - s))
        ids = np.arange(s, s + len(x))
        scores = queries @ x.T  # (nq, block)
        for name, qv, mod in (("all", None, None), ("c10", q10, 10), ("c100", q100, 100)):
            sc = (
                scores
                if qv is None
                else np.where((ids % mod)[None, :] == qv[:, None], scores, -np.inf)
            )
            kk = min(K, sc.shape[1])
            part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
            ps = np.take_along_axis(sc, part, axis=1)
            bs, bi = best[name]
            cs = np.concatenate([bs, ps], axis=1)
            ci = np.concatenate([bi, ids[part]], axis=1)
            top = np.argsort(-cs, axis=1, kind="stable")[:, :K]
            best[name] = (np.take_along_axis(cs, top, axis=1), np.take_along_axis(ci, top, axis=1))
    np.savez(
        d / "gt.npz",
        **{f"{k}_ids": v[1] for k, v in best.items()},
        **{f"{k}_scores": v[0] for k, v in best.items()},
    )
    meta = {
        "n": n,
        "dim": dim,
        "nq": nq,
        "dir": str(d),
        "corpus": [str(p) for p in corpus] if corpus else None,
        "generate_s": t_gen,
        "ground_truth_s": time.perf_counter() - t0,
    }
    meta_path.write_text(json.dumps(meta))
    return meta


def read_rows(path: Path, dim: int, start: int, count: int) -> np.ndarray:
    """Rows ``start .. start+count`` of a raw float32 file (plain reads, no mmap: keeps RSS honest)."""
    return np.fromfile(path, dtype=np.float32, count=count * dim, offset=start * dim * 4).reshape(
        count, dim
    )


def batches(data_dir: Path, n: int, dim: int, marks: list[list[float]] | None = None) -> Any:
    """Batches of 1,000 rows; ``marks`` collects [vectors done, seconds] at every tenth of the way."""
    t0 = time.perf_counter()
    step = max(BATCH, n // 10)
    for s in range(0, n, BATCH):
        m = min(BATCH, n - s)
        yield s, read_rows(data_dir / "base.f32", dim, s, m)
        if marks is not None and ((s + m) % step == 0 or s + m == n):
            marks.append([s + m, round(time.perf_counter() - t0, 3)])


# ---------------------------------------------------------------------------------- measuring


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mib() -> float:
    """VmHWM of this process (ru_maxrss would inherit the parent's peak across fork+exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_mib(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total / 2**20


# What a timed search call returns: the result ids in the system's own form (likewise and chroma:
# str, faiss and lancedb: int; faiss pads a short answer with -1). Turning them into ints for the
# recall check happens after the clock: it is work for the benchmark, not for a user of either.
Search = Callable[[int], list[int] | list[str]]


def as_labels(ids: list[int] | list[str]) -> list[int]:
    """The result ids as data-row numbers, padding dropped."""
    return [x for x in map(int, ids) if x >= 0]


def run_loop(
    fn: Search, nq: int, gt: np.ndarray, mod: int | None, ctx: dict[str, Any]
) -> dict[str, Any]:
    """One query per call, in query order; QPS, latency percentiles, recall@10 and filter check.

    Warm-up is at most ``ctx["warmup"]`` queries or 3 s. A first pass that runs past
    ``ctx["loop_budget"]`` seconds stops once it has answered 200 queries (slow systems); recall is
    then over the queries answered. A fast loop (1,000 queries at 80 µs are 0.08 s, one burst of
    other load away from a wrong figure) runs more passes over the same queries until
    ``ctx["min_loop_s"]`` seconds have passed: QPS and latencies are over every pass, recall and
    the filter check over the first.
    """
    warmup, budget_s = ctx["warmup"], ctx["loop_budget"]
    min_s = ctx.get("min_loop_s", 0.0)
    t_w = time.perf_counter()
    for i in range(warmup):
        fn(i % nq)
        if time.perf_counter() - t_w > 3.0:
            break
    lat: list[float] = []
    results: list[list[int] | list[str]] = []
    t_all = time.perf_counter()
    cpu0 = time.process_time()
    for i in range(nq):
        t = time.perf_counter()
        r = fn(i)
        lat.append(time.perf_counter() - t)
        results.append(r)
        if i >= 199 and t - t_all > budget_s:
            break
    done = len(results)
    passes = _more_passes(fn, nq, t_all, min_s, lat) if done == nq else 1
    wall = time.perf_counter() - t_all
    cpu = time.process_time() - cpu0
    answered = len(lat)
    lat_s = np.asarray(lat)
    hits = 0
    violations = 0
    short = 0
    for i, ids in enumerate(results):
        r = as_labels(ids)
        hits += len(set(r[:K]) & set(gt[i].tolist()))
        if len(r) < K:
            short += 1
        if mod is not None:
            violations += sum(1 for x in r if x % mod != i % mod)
    return {
        "qps": answered / wall,
        "p50_ms": float(np.percentile(lat_s, 50) * 1e3),
        "p99_ms": float(np.percentile(lat_s, 99) * 1e3),
        "mean_ms": float(lat_s.mean() * 1e3),
        # all threads of the process; less sensitive to other load
        "cpu_ms_per_query": cpu / answered * 1e3,
        "recall": hits / (K * done),
        "filter_violations": violations,
        "short_results": short,
        "queries": done,
        "passes": passes,
        "timed_s": wall,
    }


def _more_passes(
    fn: Search, nq: int, t0: float, min_s: float, lat: list[float] | None = None
) -> int:
    """After a first pass that began at ``t0``, more passes over the ``nq`` queries until ``min_s``
    seconds have passed (at most 100 in all), each call's latency appended to ``lat`` when given.
    Returns the number of passes, the first included."""
    passes = 1
    while time.perf_counter() - t0 < min_s and passes < 100:
        for i in range(nq):
            t = time.perf_counter()
            fn(i)
            if lat is not None:
                lat.append(time.perf_counter() - t)
        passes += 1
    return passes


def quick_recall(fn: Search, nq: int, gt: np.ndarray, min_s: float = 0.5) -> tuple[float, float]:
    """Recall@10 over one pass of the queries, and QPS over as many passes as fill ``min_s``
    seconds (one pass of a fast system is too short a window to time)."""
    for i in range(min(50, nq)):
        fn(i)
    t = time.perf_counter()
    res = [fn(i) for i in range(nq)]
    answered = nq * _more_passes(fn, nq, t, min_s)
    qps = answered / (time.perf_counter() - t)
    rec = sum(len(set(as_labels(r)[:K]) & set(gt[i].tolist())) for i, r in enumerate(res)) / (
        K * nq
    )
    return rec, qps


# ---------------------------------------------------------------------------------- systems
# Each system: build(ctx) -> dict, tune(ctx) -> dict, serve(ctx) -> dict.
# ctx: data_dir, sys_dir, n, dim, nq, params (from tune), cfg.


def _meta(s: int, m: int) -> list[dict[str, int]]:
    return [{"cat10": i % 10, "cat100": i % 100} for i in range(s, s + m)]


# likewise ---------------------------------------------------------------------------------


def likewise_build(ctx: dict[str, Any]) -> dict[str, Any]:
    import likewise

    path = Path(ctx["sys_dir"])
    db = likewise.open(
        path
    )  # synchronous=FULL (the default): every batch is synced when it returns
    idx = db.create_index("bench", dimensions=ctx["dim"], metric="cosine")
    if ctx["cfg"]["likewise_metadata_indexes"]:
        idx.create_metadata_index("cat10", "number")
        idx.create_metadata_index("cat100", "number")
    marks: list[list[float]] = []
    t0 = time.perf_counter()
    for s, x in batches(Path(ctx["data_dir"]), ctx["n"], ctx["dim"], marks):
        idx.upsert_arrays([str(i) for i in range(s, s + len(x))], x, metadata=_meta(s, len(x)))
    t_ingest = time.perf_counter() - t0
    eng = idx._engine  # read-only peek, for the report: how far the background indexer had got
    indexed_at_end = eng.indexed
    t1 = time.perf_counter()
    idx.optimize()
    t_opt = time.perf_counter() - t1
    t2 = time.perf_counter()
    db.close()
    t_close = time.perf_counter() - t2
    return {
        "ingest_s": t_ingest,
        "ingest_rate": ctx["n"] / t_ingest,
        "ingest_marks": marks,
        "indexed_when_ingest_returned": indexed_at_end,
        "index_build_s": t_opt,
        "index_build_what": "idx.optimize() after ingest (flush the tail into HNSW + write snapshot)",
        "close_s": t_close,
        "time_to_indexed_s": t_ingest + t_opt,
    }


def likewise_refresh(ctx: dict[str, Any]) -> dict[str, Any]:
    """Bring a reused build up to this code: open it and ``optimize()`` (index anything pending,
    train what this version trains that the build lacks, e.g. the sketches, and write the
    snapshot), so that no serving round does that work in the background."""
    t0 = time.perf_counter()
    db, idx = _likewise_open(ctx, None)
    idx.optimize()
    db.close()
    return {"refresh_s": time.perf_counter() - t0}


def _likewise_open(ctx: dict[str, Any], ef: int | None) -> tuple[Any, Any]:
    import likewise

    params = likewise.EngineParams(ef_search=ef) if ef is not None else None
    db = likewise.open(Path(ctx["sys_dir"]), engine=params)
    return db, db.index("bench")


def _likewise_fn(idx: Any, queries: np.ndarray, mode: str) -> Search:
    if mode == "all":
        return lambda i: [m.id for m in idx.query(queries[i], top_k=K).matches]
    key, mod = ("cat10", 10) if mode == "c10" else ("cat100", 100)
    return lambda i: [
        m.id for m in idx.query(queries[i], top_k=K, filter={key: i % mod}).matches
    ]


def likewise_tune(ctx: dict[str, Any]) -> dict[str, Any]:
    queries, gt = _load_q(ctx)
    curve = []
    chosen = None
    import dataclasses

    db, idx = _likewise_open(ctx, None)
    for ef in EF_SWEEP:
        # Same effect as likewise.open(path, engine=EngineParams(ef_search=ef)) (ef_search is only
        # read at query time), without paying a reopen per setting; serve reopens properly.
        idx._engine.params = dataclasses.replace(idx._engine.params, ef_search=ef)
        rec, qps = quick_recall(_likewise_fn(idx, queries, "all"), len(queries), gt["all_ids"])
        curve.append({"ef": ef, "recall": rec, "qps": qps})
        if rec >= TARGET_RECALL and chosen is None:
            chosen = ef
        if chosen is not None and ef >= max(chosen, EF_DEFAULT):
            break
    db.close()
    return {"curve": curve, "min_ef_for_target": chosen}


def likewise_serve(ctx: dict[str, Any]) -> dict[str, Any]:
    import likewise  # noqa: F401 - imported before the baseline RSS is taken

    queries, gt = _load_q(ctx)
    ef = ctx.get("ef")
    rss_base = rss_mib()
    t0 = time.perf_counter()
    db, idx = _likewise_open(ctx, ef)
    t_open = time.perf_counter() - t0
    first = idx.query(queries[0], top_k=K)
    t_first = time.perf_counter() - t0
    rss_open = rss_mib()
    t1 = time.perf_counter()
    idx.query(queries[1], top_k=K, filter={"cat10": 1})
    t_first_filtered = time.perf_counter() - t1
    out: dict[str, Any] = {
        "open_s": t_open,
        "open_first_query_s": t_first,
        "first_filtered_query_s": t_first_filtered,
        "rss_before_open_mib": rss_base,
        "rss_after_open_mib": rss_open,
        "first_ok": len(first.matches) == K,
        "ef": ef if ef is not None else EF_DEFAULT,
    }
    for mode, mod in (("all", None), ("c10", 10), ("c100", 100)):
        out[mode] = run_loop(
            _likewise_fn(idx, queries, mode),
            len(queries),
            gt[f"{mode}_ids"],
            mod,
            ctx,
        )
        out[mode]["plan"] = repr(idx._engine.last_plan)
    out["rss_end_mib"] = rss_mib()
    out["peak_rss_mib"] = peak_rss_mib()
    out["ab_same_graph"] = _likewise_ab(idx, queries, ef if ef is not None else EF_DEFAULT)
    db.close()
    return out


def _likewise_ab(
    idx: Any, queries: np.ndarray, ef: int, blocks: int = 10, per: int = 100
) -> dict[str, Any]:
    """In-process A/B: Index.query against faiss searching the very same graph object, alternating
    blocks of queries, so both see the same machine load. Returns QPS of each and the ratio."""
    import faiss

    graph = idx._engine.graph.index  # read-only use of the engine's faiss index
    params = faiss.SearchParametersHNSW(efSearch=ef)
    nq = len(queries)
    t_lw = t_fa = 0.0
    done = 0
    for b in range(blocks):
        qs = [queries[(b * per + j) % nq] for j in range(per)]
        for first in (0, 1) if b % 2 == 0 else (1, 0):
            t = time.perf_counter()
            if first == 0:
                for q in qs:
                    [m.id for m in idx.query(q, top_k=K).matches]
                t_lw += time.perf_counter() - t
            else:
                for q in qs:
                    _d, i = graph.search(q.reshape(1, -1), K, params=params)
                    i[0].tolist()
                t_fa += time.perf_counter() - t
        done += per
    return {
        "ef": ef,
        "queries_each": done,
        "likewise_qps": done / t_lw,
        "faiss_qps": done / t_fa,
        "ratio": t_fa / t_lw,
        "likewise_us_per_query": t_lw / done * 1e6,
        "faiss_us_per_query": t_fa / done * 1e6,
    }


# raw faiss --------------------------------------------------------------------------------


def faiss_build(ctx: dict[str, Any]) -> dict[str, Any]:
    import faiss

    path = Path(ctx["sys_dir"])
    path.mkdir(parents=True, exist_ok=True)
    reuse = ctx.get("faiss_reuse")
    if reuse:  # the graph likewise built (same faiss IndexHNSWFlat, same M/efC, same data)
        state = json.loads((Path(reuse) / "state.json").read_text())
        t1 = time.perf_counter()
        shutil.copyfile(Path(reuse) / state["graph_file"], path / "index.faiss")
        return {
            "reused_from": str(Path(reuse) / state["graph_file"]),
            "index_build_what": "not built: likewise's snapshot graph (faiss IndexHNSWFlat, M16, efC128) is served raw",
            "copy_s": time.perf_counter() - t1,
        }
    index = faiss.IndexHNSWFlat(ctx["dim"], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    marks: list[list[float]] = []
    t0 = time.perf_counter()
    for _s, x in batches(Path(ctx["data_dir"]), ctx["n"], ctx["dim"], marks):
        index.add(x)
    t_add = time.perf_counter() - t0
    t1 = time.perf_counter()
    tmp = path / "index.faiss.tmp"
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path / "index.faiss")
    t_write = time.perf_counter() - t1
    return {
        "ingest_s": t_add,
        "ingest_rate": ctx["n"] / t_add,
        "ingest_marks": marks,
        "index_build_s": 0.0,
        "index_build_what": "the graph is built by add() (batches of 1,000); write_index+fsync timed apart",
        "persist_s": t_write,
        "time_to_indexed_s": t_add,
        "durable": False,
    }


class _FaissSearcher:
    """Raw faiss, with likewise's planner mirrored for filters (precomputed bitmaps: its best case)."""

    def __init__(self, index: Any, n: int) -> None:
        import faiss

        self.faiss = faiss
        self.index = index
        self.n = n
        self.params: dict[int, Any] = {}
        self.sel: dict[tuple[int, int], Any] = {}
        ids = np.arange(n)
        for mod in (10, 100) if n else ():
            for v in range(mod):
                bits = np.packbits(ids % mod == v, bitorder="little")
                self.sel[(mod, v)] = (faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits)), bits)

    def search(self, q: np.ndarray, ef: int) -> list[int]:
        p = self.params.get(ef)
        if p is None:
            p = self.params[ef] = self.faiss.SearchParametersHNSW(efSearch=ef)
        _d, i = self.index.search(q.reshape(1, -1), K, params=p)
        return i[0].tolist()

    def filtered(self, q: np.ndarray, mod: int, v: int, ef: int) -> list[int]:
        sel, _bits = self.sel[(mod, v)]
        method, e = mirror_plan(self.n, self.n // mod, ef)
        self.last_plan = (method, e)
        if method == "exact":
            _d, i = self.index.storage.search(
                q.reshape(1, -1), K, params=self.faiss.SearchParameters(sel=sel)
            )
        else:
            _d, i = self.index.search(
                q.reshape(1, -1), K, params=self.faiss.SearchParametersHNSW(sel=sel, efSearch=e)
            )
        return i[0].tolist()


def mirror_plan(n: int, cands: int, ef: int) -> tuple[str, int]:
    """The plan likewise's planner picks for ``cands`` passing vectors out of ``n`` (fully indexed),
    from its EngineParams defaults: raw faiss then runs the same search (exact or HNSW at that ef)."""
    import likewise

    p = likewise.EngineParams()
    sel = cands / n
    if hasattr(p, "exact_sqrt_factor"):  # planner of 2026-11-27 13:2x
        exact = cands <= max(p.exact_max_candidates, p.exact_sqrt_factor * math.sqrt(K * n))
        e = min(p.max_ef, max(ef, K, math.ceil(p.ef_filter_factor * K / sel)))
    else:  # the earlier planner
        exact = cands <= p.exact_max_candidates or sel < p.exact_max_selectivity
        e = min(
            p.max_ef, max(K, math.ceil(ef * (1 / sel) ** getattr(p, "ef_filter_exponent", 1.0)))
        )
    return ("exact", 0) if exact else ("hnsw", e)


def _planner() -> dict[str, Any]:
    import dataclasses

    import likewise

    return dataclasses.asdict(likewise.EngineParams())


def faiss_tune(ctx: dict[str, Any]) -> dict[str, Any]:
    import faiss

    queries, gt = _load_q(ctx)
    index = faiss.read_index(str(Path(ctx["sys_dir"]) / "index.faiss"))
    s = _FaissSearcher(index, 0)
    curve, chosen = [], None
    for ef in EF_SWEEP:
        rec, qps = quick_recall(
            lambda i, e=ef: s.search(queries[i], e), len(queries), gt["all_ids"]
        )
        curve.append({"ef": ef, "recall": rec, "qps": qps})
        if rec >= TARGET_RECALL and chosen is None:
            chosen = ef
        if chosen is not None and ef >= max(chosen, EF_DEFAULT):
            break
    return {"curve": curve, "min_ef_for_target": chosen}


def faiss_serve(ctx: dict[str, Any]) -> dict[str, Any]:
    import faiss

    queries, gt = _load_q(ctx)
    ef = ctx.get("ef") or EF_DEFAULT
    rss_base = rss_mib()
    t0 = time.perf_counter()
    index = faiss.read_index(str(Path(ctx["sys_dir"]) / "index.faiss"))
    t_open = time.perf_counter() - t0
    params = faiss.SearchParametersHNSW(efSearch=ef)
    index.search(queries[:1], K, params=params)
    t_first = time.perf_counter() - t0
    rss_open = rss_mib()
    s = _FaissSearcher(index, ctx["n"])
    out: dict[str, Any] = {
        "open_s": t_open,
        "open_first_query_s": t_first,
        "rss_before_open_mib": rss_base,
        "rss_after_open_mib": rss_open,
        "ef": ef,
        "planner": _planner(),
    }
    out["all"] = run_loop(
        lambda i: s.search(queries[i], ef),
        len(queries),
        gt["all_ids"],
        None,
        ctx,
    )
    out["c10"] = run_loop(
        lambda i: s.filtered(queries[i], 10, i % 10, ef),
        len(queries),
        gt["c10_ids"],
        10,
        ctx,
    )
    out["c10"]["plan"] = repr(mirror_plan(ctx["n"], ctx["n"] // 10, ef))
    out["c100"] = run_loop(
        lambda i: s.filtered(queries[i], 100, i % 100, ef),
        len(queries),
        gt["c100_ids"],
        100,
        ctx,
    )
    out["c100"]["plan"] = repr(mirror_plan(ctx["n"], ctx["n"] // 100, ef))
    out["rss_end_mib"] = rss_mib()
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# chromadb ---------------------------------------------------------------------------------


def _chroma_client(path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def chroma_build(ctx: dict[str, Any]) -> dict[str, Any]:
    path = Path(ctx["sys_dir"])
    client = _chroma_client(path)
    col = client.create_collection(
        "bench",
        configuration={
            "hnsw": {
                "space": "ip",
                "ef_construction": EF_CONSTRUCTION,
                "max_neighbors": M,
                "ef_search": ctx["cfg"]["chroma_ef"],
            }
        },
        embedding_function=None,
    )
    marks: list[list[float]] = []
    t0 = time.perf_counter()
    for s, x in batches(Path(ctx["data_dir"]), ctx["n"], ctx["dim"], marks):
        col.add(
            ids=[str(i) for i in range(s, s + len(x))], embeddings=x, metadatas=_meta(s, len(x))
        )
    t_ingest = time.perf_counter() - t0
    t1 = time.perf_counter()
    q = np.load(Path(ctx["data_dir"]) / "queries.npy")[:1]
    col.query(query_embeddings=q, n_results=K, include=["distances"])
    t_first = time.perf_counter() - t1
    count = col.count()
    return {
        "ingest_s": t_ingest,
        "ingest_rate": ctx["n"] / t_ingest,
        "ingest_marks": marks,
        "index_build_s": 0.0,
        "index_build_what": "chroma builds its HNSW during add(); first query after ingest timed apart",
        "first_query_after_ingest_s": t_first,
        "count": count,
        "time_to_indexed_s": t_ingest,
    }


def chroma_setef(ctx: dict[str, Any]) -> dict[str, Any]:
    """Change ef_search; it takes effect for the next process that opens the collection."""
    col = _chroma_client(Path(ctx["sys_dir"])).get_collection("bench", embedding_function=None)
    col.modify(configuration={"hnsw": {"ef_search": int(ctx["ef"])}})
    return {"ef": int(ctx["ef"])}


def chroma_probe(ctx: dict[str, Any]) -> dict[str, Any]:
    queries, gt = _load_q(ctx)
    col = _chroma_client(Path(ctx["sys_dir"])).get_collection("bench", embedding_function=None)
    conf = getattr(col, "configuration_json", None) or {}
    nq = min(300, len(queries))

    def fn(i: int) -> list[str]:
        r = col.query(query_embeddings=queries[i : i + 1], n_results=K, include=["distances"])
        return r["ids"][0]

    rec, qps = quick_recall(fn, nq, gt["all_ids"])
    return {
        "ef": int(ctx["ef"]),
        "ef_in_config": (conf.get("hnsw") or {}).get("ef_search"),
        "recall": rec,
        "qps": qps,
        "queries": nq,
    }


def chroma_serve(ctx: dict[str, Any]) -> dict[str, Any]:
    import chromadb  # noqa: F401 - imported before the baseline RSS is taken

    queries, gt = _load_q(ctx)
    rss_base = rss_mib()
    t0 = time.perf_counter()
    client = _chroma_client(Path(ctx["sys_dir"]))
    col = client.get_collection("bench", embedding_function=None)
    t_open = time.perf_counter() - t0
    col.query(query_embeddings=queries[:1], n_results=K, include=["distances"])
    t_first = time.perf_counter() - t0
    rss_open = rss_mib()

    def fn(where: Callable[[int], dict[str, int] | None]) -> Search:
        def q(i: int) -> list[str]:
            w = where(i)
            r = col.query(
                query_embeddings=queries[i : i + 1], n_results=K, where=w, include=["distances"]
            )
            return r["ids"][0]

        return q

    out: dict[str, Any] = {
        "open_s": t_open,
        "open_first_query_s": t_first,
        "rss_before_open_mib": rss_base,
        "rss_after_open_mib": rss_open,
        "ef": ctx.get("ef", ctx["cfg"]["chroma_ef"]),
        "ef_in_config": ((getattr(col, "configuration_json", None) or {}).get("hnsw") or {}).get(
            "ef_search"
        ),
    }
    out["all"] = run_loop(fn(lambda i: None), len(queries), gt["all_ids"], None, ctx)
    out["c10"] = run_loop(
        fn(lambda i: {"cat10": i % 10}),
        len(queries),
        gt["c10_ids"],
        10,
        ctx,
    )
    out["c100"] = run_loop(
        fn(lambda i: {"cat100": i % 100}),
        len(queries),
        gt["c100_ids"],
        100,
        ctx,
    )
    out["rss_end_mib"] = rss_mib()
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# lancedb ----------------------------------------------------------------------------------


def _lance_table(x: np.ndarray, s: int) -> Any:
    import pyarrow as pa

    ids = np.arange(s, s + len(x), dtype=np.int64)
    vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), type=pa.float32()), x.shape[1])
    return pa.table(
        {
            "id": ids,
            "vector": vec,
            "cat10": (ids % 10).astype(np.int32),
            "cat100": (ids % 100).astype(np.int32),
        }
    )


def lance_partitions(n: int) -> int:
    return max(1, n // 100_000)


def lance_build(ctx: dict[str, Any]) -> dict[str, Any]:
    import lancedb

    path = Path(ctx["sys_dir"])
    db = lancedb.connect(str(path))
    tbl = None
    marks: list[list[float]] = []
    t0 = time.perf_counter()
    for s, x in batches(Path(ctx["data_dir"]), ctx["n"], ctx["dim"], marks):
        t = _lance_table(x, s)
        if tbl is None:
            tbl = db.create_table("bench", data=t)
        else:
            tbl.add(t)
    t_ingest = time.perf_counter() - t0
    assert tbl is not None
    t1 = time.perf_counter()
    tbl.create_index(
        metric="dot",
        vector_column_name="vector",
        index_type="IVF_HNSW_SQ",
        num_partitions=lance_partitions(ctx["n"]),
        m=M,
        ef_construction=EF_CONSTRUCTION,
    )
    t_vec = time.perf_counter() - t1
    t2 = time.perf_counter()
    tbl.create_scalar_index("cat10", index_type="BITMAP")
    tbl.create_scalar_index("cat100", index_type="BITMAP")
    t_scalar = time.perf_counter() - t2
    return {
        "ingest_s": t_ingest,
        "ingest_rate": ctx["n"] / t_ingest,
        "ingest_marks": marks,
        "index_build_s": t_vec + t_scalar,
        "vector_index_s": t_vec,
        "scalar_index_s": t_scalar,
        "index_build_what": f"create_index IVF_HNSW_SQ (partitions {lance_partitions(ctx['n'])}, m {M}, efC {EF_CONSTRUCTION}) + 2 BITMAP scalar indexes",
        "time_to_indexed_s": t_ingest + t_vec + t_scalar,
        "versions": len(tbl.list_versions()),
    }


def _lance_fn(
    tbl: Any, queries: np.ndarray, nprobes: int, ef: int, refine: int | None, mode: str
) -> Search:
    def q(i: int) -> list[int]:
        b = (
            tbl.search(queries[i], vector_column_name="vector")
            .distance_type("dot")
            .nprobes(nprobes)
            .ef(ef)
            .limit(K)
        )
        if refine:
            b = b.refine_factor(refine)
        if mode == "c10":
            b = b.where(f"cat10 = {i % 10}", prefilter=True)
        elif mode == "c100":
            b = b.where(f"cat100 = {i % 100}", prefilter=True)
        return b.select(["id"]).to_arrow()["id"].to_pylist()

    return q


def lance_tune(ctx: dict[str, Any]) -> dict[str, Any]:
    import lancedb

    queries, gt = _load_q(ctx)
    tbl = lancedb.connect(str(ctx["sys_dir"])).open_table("bench")
    nq = min(300, len(queries))
    parts = lance_partitions(ctx["n"])
    probes = sorted({1, 2, 4, 8, parts} & set(range(1, parts + 1))) if parts > 1 else [1]
    curve = []
    for nprobes in probes:
        for ef in (32, 64, 128, 256):
            for refine in (None,):
                rec, qps = quick_recall(
                    _lance_fn(tbl, queries, nprobes, ef, refine, "all"), nq, gt["all_ids"]
                )
                curve.append(
                    {"nprobes": nprobes, "ef": ef, "refine": refine, "recall": rec, "qps": qps}
                )
                if rec >= 0.97:
                    break
    ok = [c for c in curve if c["recall"] >= TARGET_RECALL]
    best = max(ok, key=lambda c: c["qps"]) if ok else max(curve, key=lambda c: c["recall"])
    return {"curve": curve, "chosen": best, "tune_queries": nq}


def lance_serve(ctx: dict[str, Any]) -> dict[str, Any]:
    import lancedb

    queries, gt = _load_q(ctx)
    ch = ctx.get("lance") or {"nprobes": 1, "ef": 64, "refine": None}
    rss_base = rss_mib()
    t0 = time.perf_counter()
    tbl = lancedb.connect(str(ctx["sys_dir"])).open_table("bench")
    t_open = time.perf_counter() - t0
    _lance_fn(tbl, queries, ch["nprobes"], ch["ef"], ch["refine"], "all")(0)
    t_first = time.perf_counter() - t0
    rss_open = rss_mib()
    out: dict[str, Any] = {
        "open_s": t_open,
        "open_first_query_s": t_first,
        "rss_before_open_mib": rss_base,
        "rss_after_open_mib": rss_open,
        "params": ch,
    }
    for mode, mod in (("all", None), ("c10", 10), ("c100", 100)):
        fn = _lance_fn(tbl, queries, ch["nprobes"], ch["ef"], ch["refine"], mode)
        out[mode] = run_loop(fn, len(queries), gt[f"{mode}_ids"], mod, ctx)
    out["rss_end_mib"] = rss_mib()
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# ------------------------------------------------------------------------------------ report


def _med(runs: list[dict[str, Any]], *path: str) -> float | None:
    vals = []
    for r in runs:
        v: Any = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(float(v))
    return float(np.median(vals)) if vals else None


def _f(v: float | None, digits: int = 0, unit: str = "") -> str:
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def markdown(reports: list[dict[str, Any]]) -> str:
    """Tables for docs/benchmarks-core.md from one or more results files (medians over rounds)."""
    out: list[str] = []
    sizes: dict[str, dict[str, Any]] = {}
    for rep in reports:
        sizes.update(rep["sizes"])
    summary: dict[str, dict[str, Any]] = {}
    for n, srep in sizes.items():
        n_i = int(n)
        raw_mib = n_i * srep["data"]["dim"] * 4 / 2**20
        out.append(f"### {n_i:,} vectors (raw float32: {raw_mib:,.0f} MiB)\n")
        out.append(
            "**Ingest** (batches of 1,000; vectors/s until the last batch returned) **and build**\n"
        )
        out.append(
            "| system | ingest vectors/s | then index build s | time to fully indexed s | disk MiB | ingest peak RSS MiB |"
        )
        out.append("|---|---|---|---|---|---|")
        sm = summary.setdefault(n, {})
        for system, v in srep["systems"].items():
            b = v.get("build", {})
            if "skipped" in v or "error" in b:
                out.append(f"| {system} | {v.get('skipped') or b.get('error')} | | | | |")
                continue
            if b.get("reused_from"):
                out.append(
                    f"| {system} | (not built at this size: serves likewise's graph file) | | | {_f(v.get('disk_mib_final'))} | |"
                )
                continue
            out.append(
                f"| {system} | {_f(b.get('ingest_rate'))} | {_f(b.get('index_build_s'), 1)} | {_f(b.get('time_to_indexed_s'), 1)} "
                f"| {_f(b.get('disk_mib'))} | {_f(b.get('peak_rss_mib'))} |"
            )
            sm.setdefault(system, {})["ingest_rate"] = b.get("ingest_rate")
            sm[system]["time_to_indexed_s"] = b.get("time_to_indexed_s")
            sm[system]["disk_mib"] = b.get("disk_mib")
        out.append("")
        out.append(
            "**Queries** (one per call, k = 10; median of the rounds; QPS / p50 ms / p99 ms / recall@10)\n"
        )
        out.append(
            "| system, setting | unfiltered | filtered 10% | filtered 1% | filter violations | rounds |"
        )
        out.append("|---|---|---|---|---|---|")
        for system, v in srep["systems"].items():
            for label, runs in v.get("serve", {}).items():
                runs = [r for r in runs if "error" not in r]
                if not runs:
                    continue
                cells = []
                viol = 0
                for mode in ("all", "c10", "c100"):
                    cells.append(
                        f"{_f(_med(runs, mode, 'qps'))} / {_f(_med(runs, mode, 'p50_ms'), 2)} / {_f(_med(runs, mode, 'p99_ms'), 1)} / {_f(_med(runs, mode, 'recall'), 3)}"
                    )
                    viol += sum(int(r[mode]["filter_violations"]) for r in runs if mode in r)
                    sm.setdefault(system, {}).setdefault(label, {})[mode] = {
                        k: _med(runs, mode, k)
                        for k in ("qps", "p50_ms", "p99_ms", "recall", "cpu_ms_per_query")
                    }
                out.append(f"| {system}, {label} | {' | '.join(cells)} | {viol} | {len(runs)} |")
        out.append("")
        out.append(
            "**Open and memory** (fresh process that only opens and queries; medians of the rounds)\n"
        )
        out.append(
            "| system, setting | open s | open + first query s | RSS before open MiB | RSS after first query MiB | RSS after all queries MiB | peak RSS MiB | RSS / raw vectors | (RSS − before open) / raw |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for system, v in srep["systems"].items():
            for label, runs in v.get("serve", {}).items():
                runs = [r for r in runs if "error" not in r]
                if not runs:
                    continue
                rss = _med(runs, "rss_end_mib")
                base = _med(runs, "rss_before_open_mib")  # absent in results from before it was recorded
                own = (rss - base) / raw_mib if rss and base else None
                out.append(
                    f"| {system}, {label} | {_f(_med(runs, 'open_s'), 2)} | {_f(_med(runs, 'open_first_query_s'), 2)} | {_f(base)} | {_f(_med(runs, 'rss_after_open_mib'))} "
                    f"| {_f(rss)} | {_f(_med(runs, 'peak_rss_mib'))} | {_f(rss / raw_mib if rss else None, 2)}× | {_f(own, 2)}{'×' if own else ''} |"
                )
                sm.setdefault(system, {}).setdefault(label, {})["open_first_query_s"] = _med(
                    runs, "open_first_query_s"
                )
                sm[system][label]["rss_end_mib"] = rss
                sm[system][label]["raw_mib"] = raw_mib
        out.append("")
        curves = []
        for system, v in srep["systems"].items():
            t = v.get("tune") or {}
            if t.get("curve"):
                pts = []
                for c in t["curve"]:
                    if "error" in c:
                        continue
                    knob = "/".join(
                        f"{k}={c[k]}" for k in ("nprobes", "ef") if k in c and c[k] is not None
                    )
                    pts.append(f"{knob}: {c['recall']:.3f} @ {c['qps']:,.0f}")
                curves.append(f"- {system}: " + "; ".join(pts))
        if curves:
            out.append(
                "**Search-effort sweep** (unfiltered; recall@10 @ QPS over at least 0.5 s; one process a system, not interleaved)\n"
            )
            out.extend(curves)
            out.append("")
    out.append(goals(sizes))
    if len(sizes) >= 2:
        out.append(growth(sizes))
    return "\n".join(out)


def growth(sizes: dict[str, dict[str, Any]]) -> str:
    """How each measure changes from the smallest to the largest size (medians of the rounds)."""
    ns = sorted(sizes, key=int)
    lo, hi = ns[0], ns[-1]
    out = [f"### Growth from {int(lo):,} to {int(hi):,} vectors ({int(hi) // int(lo)}× the data)\n"]
    out.append(f"| system | measure | {int(lo):,} | {int(hi):,} | change |")
    out.append("|---|---|---|---|---|")
    systems = list(sizes[lo]["systems"])
    for system in systems:
        rows: list[tuple[str, float | None, float | None, int]] = []
        b0 = sizes[lo]["systems"].get(system, {}).get("build", {})
        b1 = sizes[hi]["systems"].get(system, {}).get("build", {})
        if not b1.get("reused_from"):
            rows.append(("ingest vectors/s", b0.get("ingest_rate"), b1.get("ingest_rate"), 0))
            rows.append(
                (
                    "time to fully indexed, s",
                    b0.get("time_to_indexed_s"),
                    b1.get("time_to_indexed_s"),
                    0,
                )
            )
        rows.append(
            (
                "disk MiB",
                sizes[lo]["systems"].get(system, {}).get("disk_mib_final"),
                sizes[hi]["systems"].get(system, {}).get("disk_mib_final"),
                0,
            )
        )
        labels = [
            lab
            for lab in sizes[lo]["systems"].get(system, {}).get("serve", {})
            if lab in sizes[hi]["systems"].get(system, {}).get("serve", {})
        ]
        op0, op1 = _op_label(sizes[lo], system), _op_label(sizes[hi], system)
        for lab in labels:
            r0, r1 = _runs(sizes[lo], system, lab), _runs(sizes[hi], system, lab)
            for mode, name in (("all", "unfiltered"), ("c10", "10%"), ("c100", "1%")):
                rows.append((f"{lab}: {name} QPS", _med(r0, mode, "qps"), _med(r1, mode, "qps"), 0))
                rows.append(
                    (f"{lab}: {name} p50 ms", _med(r0, mode, "p50_ms"), _med(r1, mode, "p50_ms"), 2)
                )
                rows.append(
                    (f"{lab}: {name} recall", _med(r0, mode, "recall"), _med(r1, mode, "recall"), 3)
                )
            rows.append(
                (
                    f"{lab}: open + first query s",
                    _med(r0, "open_first_query_s"),
                    _med(r1, "open_first_query_s"),
                    2,
                )
            )
            rows.append((f"{lab}: RSS MiB", _med(r0, "rss_end_mib"), _med(r1, "rss_end_mib"), 0))
        if op0 != op1 and op0 and op1:
            rows.append(
                (f"operating point (recall ≥ 0.95) moved from {op0} to {op1}", None, None, 0)
            )
        for name, v0, v1, d in rows:
            ch = f"{v1 / v0:.2f}×" if v0 and v1 else ""
            out.append(f"| {system} | {name} | {_f(v0, d)} | {_f(v1, d)} | {ch} |")
    out.append("")
    return "\n".join(out)


def _runs(
    srep: dict[str, Any], system: str, label: str | None, aligned: bool = False
) -> list[dict[str, Any]]:
    """The serve runs of one setting, in round order; ``aligned`` keeps failed rounds (as {})."""
    if label is None:
        return []
    runs = srep["systems"].get(system, {}).get("serve", {}).get(label, [])
    if aligned:
        return [({} if "error" in r else r) for r in runs]
    return [r for r in runs if "error" not in r]


def _op_label(srep: dict[str, Any], system: str) -> str | None:
    """The served setting with the highest median unfiltered QPS among those at recall@10 >= 0.95."""
    best, best_qps = None, -1.0
    for label in srep["systems"].get(system, {}).get("serve", {}):
        runs = _runs(srep, system, label)
        rec, qps = _med(runs, "all", "recall"), _med(runs, "all", "qps")
        if rec is not None and qps is not None and rec >= TARGET_RECALL and qps > best_qps:
            best, best_qps = label, qps
    return best


def _paired(
    a: list[dict[str, Any]], b: list[dict[str, Any]], pa: tuple[str, ...], pb: tuple[str, ...]
) -> tuple[float | None, list[float]]:
    """Median over rounds of a/b, each ratio taken within one round (the same minutes of machine load)."""
    ratios = []
    for ra, rb in zip(a, b):
        va, vb = _med([ra], *pa), _med([rb], *pb)
        if va is not None and vb:
            ratios.append(va / vb)
    return (float(np.median(ratios)) if ratios else None), ratios


def goals(sizes: dict[str, dict[str, Any]]) -> str:
    out = [
        "### Goals of issue 2\n",
        "Ratios are taken within each round (the two measurements a few seconds apart) and the median of",
        "the rounds is shown, with the per-round ratios in brackets.\n",
        "| size | goal | measured | verdict |",
        "|---|---|---|---|",
    ]

    def row(n: str, goal: str, measured: str, ok: bool | None) -> None:
        out.append(
            f"| {int(n):,} | {goal} | {measured} | {'met' if ok else ('not met' if ok is not None else 'n/a')} |"
        )

    def br(rs: list[float], d: int = 2) -> str:
        return "[" + ", ".join(f"{x:.{d}f}" for x in rs) + "]"

    for n, srep in sizes.items():
        raw_mib = int(n) * srep["data"]["dim"] * 4 / 2**20
        lw_l, fa_l, ch_l = (_op_label(srep, s) for s in ("likewise", "faiss", "chroma"))
        lw_op, fa_op, ch_op = (
            _runs(srep, "likewise", lw_l),
            _runs(srep, "faiss", fa_l),
            _runs(srep, "chroma", ch_l),
        )
        d_l = f"ef{EF_DEFAULT}"
        lw_d, fa_d = _runs(srep, "likewise", d_l), _runs(srep, "faiss", d_l)
        if lw_op and fa_op:
            r, rs = _paired(
                _runs(srep, "likewise", lw_l, True),
                _runs(srep, "faiss", fa_l, True),
                ("all", "qps"),
                ("all", "qps"),
            )
            row(
                n,
                "unfiltered, recall ≥ 0.95: QPS ≥ 0.8× raw faiss",
                f"likewise {lw_l} {_med(lw_op, 'all', 'qps'):,.0f} (recall {_med(lw_op, 'all', 'recall'):.3f}) vs faiss {fa_l} {_med(fa_op, 'all', 'qps'):,.0f} "
                f"(recall {_med(fa_op, 'all', 'recall'):.3f}): {r:.2f}× {br(rs)}",
                r is not None and r >= 0.8,
            )
        if lw_d and fa_d:
            r, rs = _paired(
                _runs(srep, "likewise", d_l, True),
                _runs(srep, "faiss", d_l, True),
                ("all", "qps"),
                ("all", "qps"),
            )
            row(
                n,
                f"unfiltered, same ef {EF_DEFAULT} (likewise's default): ≥ 0.8× raw faiss",
                f"{_med(lw_d, 'all', 'qps'):,.0f} vs {_med(fa_d, 'all', 'qps'):,.0f}: {r:.2f}× {br(rs)}",
                r is not None and r >= 0.8,
            )
        for label in srep["systems"].get("likewise", {}).get("serve", {}):
            abs_ = [
                r["ab_same_graph"] for r in _runs(srep, "likewise", label) if r.get("ab_same_graph")
            ]
            if abs_:
                rs = [a["ratio"] for a in abs_]
                over = float(
                    np.median([a["likewise_us_per_query"] - a["faiss_us_per_query"] for a in abs_])
                )
                r = float(np.median(rs))
                row(
                    n,
                    f"(in-process A/B, same graph, {label}): Index.query vs faiss search ≥ 0.8×",
                    f"{r:.2f}× {br(rs)}; likewise adds {over:,.0f} µs a query",
                    r >= 0.8,
                )
        if lw_op and ch_op:
            r, rs = _paired(
                _runs(srep, "likewise", lw_l, True),
                _runs(srep, "chroma", ch_l, True),
                ("all", "qps"),
                ("all", "qps"),
            )
            row(
                n,
                "unfiltered, recall ≥ 0.95: QPS ≥ 3× chromadb",
                f"{_med(lw_op, 'all', 'qps'):,.0f} vs chroma {ch_l} {_med(ch_op, 'all', 'qps'):,.0f} (recall {_med(ch_op, 'all', 'recall'):.3f}): {r:.1f}× {br(rs, 1)}",
                r is not None and r >= 3,
            )
        if lw_d:
            for mode, name in (("c10", "10%"), ("c100", "1%")):
                rec = _med(lw_d, mode, "recall")
                viol = sum(int(r[mode]["filter_violations"]) for r in lw_d)
                row(
                    n,
                    f"filtered {name} (default ef): recall ≥ 0.95, every result passes",
                    f"recall {rec:.3f}, {viol} violations",
                    rec is not None and rec >= TARGET_RECALL and viol == 0,
                )
                r, rs = _paired(lw_d, lw_d, (mode, "qps"), ("all", "qps"))
                row(
                    n,
                    f"filtered {name} (default ef): QPS ≥ 0.5× unfiltered",
                    f"{_med(lw_d, mode, 'qps'):,.0f} vs {_med(lw_d, 'all', 'qps'):,.0f}: {r:.2f}× {br(rs)}",
                    r is not None and r >= 0.5,
                )
        lb, cb = (
            srep["systems"].get("likewise", {}).get("build", {}),
            srep["systems"].get("chroma", {}).get("build", {}),
        )
        if lb.get("ingest_rate") and cb.get("ingest_rate"):
            r = lb["ingest_rate"] / cb["ingest_rate"]
            row(
                n,
                "durable ingest (batches of 1,000) ≥ 2× chromadb",
                f"{lb['ingest_rate']:,.0f} vs {cb['ingest_rate']:,.0f} vectors/s: {r:.1f}×",
                r >= 2,
            )
        if lw_d:
            ts = [r["open_first_query_s"] for r in lw_d]
            t = float(np.median(ts))
            row(n, "reopen + first query ≤ 3 s", f"{t:.2f} s {br(ts)}", t <= 3)
            rss = _med(lw_d, "rss_end_mib")
            if rss:
                row(
                    n,
                    "RSS ≤ 1.5× raw float32 vectors (issue 2 sets this for the reopened 1M index)",
                    f"{rss:,.0f} MiB = {rss / raw_mib:.2f}× of {raw_mib:,.0f} MiB",
                    rss / raw_mib <= 1.5,
                )
            base = _med(lw_d, "rss_before_open_mib")
            if rss and base:
                row(
                    n,
                    "(what opening added: RSS − RSS before open ≤ 1.5× raw)",
                    f"{rss - base:,.0f} MiB = {(rss - base) / raw_mib:.2f}× (interpreter and libraries before open: {base:,.0f} MiB)",
                    (rss - base) / raw_mib <= 1.5,
                )
    out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------------ driver

SYSTEMS: dict[str, dict[str, Callable[[dict[str, Any]], dict[str, Any]] | None]] = {
    "likewise": {"build": likewise_build, "refresh": likewise_refresh, "tune": likewise_tune, "serve": likewise_serve},
    "faiss": {"build": faiss_build, "tune": faiss_tune, "serve": faiss_serve},
    "chroma": {
        "build": chroma_build,
        "tune": None,
        "serve": chroma_serve,
        "setef": chroma_setef,
        "probe": chroma_probe,
    },
    "lancedb": {"build": lance_build, "tune": lance_tune, "serve": lance_serve},
}


def _load_q(ctx: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    d = Path(ctx["data_dir"])
    queries = np.load(d / "queries.npy")[: ctx["nq"]]
    gt = dict(np.load(d / "gt.npz"))
    return queries, {k: v[: ctx["nq"]] for k, v in gt.items()}


def worker(
    step: str,
    system: str,
    ctx_path: Path,
    out_path: Path,
    table: dict[str, dict[str, Callable[[dict[str, Any]], dict[str, Any]] | None]] | None = None,
) -> None:
    """Run one step of one system (from ``table``, bench_core's ``SYSTEMS`` by default) in this
    process and write its result for :func:`spawn`."""
    ctx = json.loads(ctx_path.read_text())
    fn = (table or SYSTEMS)[system].get(step)
    assert fn is not None
    t0 = time.perf_counter()
    res = fn(ctx)
    res["step_wall_s"] = time.perf_counter() - t0
    res.setdefault("peak_rss_mib", peak_rss_mib())
    if step == "build":
        res["disk_mib"] = dir_mib(Path(ctx["sys_dir"]))
    out_path.write_text(json.dumps(res))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (chroma/lance background threads); results are written


def spawn(
    step: str,
    system: str,
    ctx: dict[str, Any],
    workdir: Path,
    timeout: float,
    script: Path | None = None,
) -> dict[str, Any]:
    """Run ``step`` of ``system`` in a fresh process of ``script`` (this file by default; another
    benchmark that calls :func:`worker` for ``--worker``); its result, wall time and load average."""
    tag = f"{system}-{step}-{ctx['n']}-{int(time.time() * 1000)}"
    ctx_path = workdir / f"ctx-{tag}.json"
    out_path = workdir / f"out-{tag}.json"
    ctx_path.write_text(json.dumps(ctx))
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    proc = subprocess.run(
        [
            sys.executable,
            str((script or Path(__file__)).resolve()),
            "--worker",
            step,
            "--system",
            system,
            "--ctx",
            str(ctx_path),
            "--result",
            str(out_path),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out_path.exists():
        print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
        return {
            "error": f"exit {proc.returncode}",
            "stderr_tail": proc.stderr[-2000:],
            "process_wall_s": wall,
        }
    res = json.loads(out_path.read_text())
    res["process_wall_s"] = wall
    res["loadavg_1min_before_after"] = [load0, os.getloadavg()[0]]
    return res


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        out["likewise_git"] = rev + (" (src/ has uncommitted changes)" if dirty else "")
        if dirty:
            import hashlib

            diff = subprocess.run(
                ["git", "-C", str(REPO), "diff", "HEAD", "--", "src"],
                capture_output=True,
                check=False,
            ).stdout
            out["likewise_src_diff_sha1"] = hashlib.sha1(diff).hexdigest()[:12]
    except OSError:
        out["likewise_git"] = None
    import importlib.metadata as md
    import sqlite3

    for pkg in (
        "likewise",
        "faiss-cpu",
        "chromadb",
        "lancedb",
        "pylance",
        "numpy",
        "pyarrow",
        "psutil",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    out["sqlite"] = sqlite3.sqlite_version
    try:
        with open("/proc/cpuinfo") as fh:
            out["cpu"] = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None
            )
    except OSError:
        pass
    out["cores"] = os.cpu_count()
    out["thread_env"] = {
        v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    try:
        import psutil

        out["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes", default="100000,1000000", help="comma-separated vector counts, run in this order"
    )
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--systems", default="likewise,faiss,chroma,lancedb")
    ap.add_argument("--out", default=str(HERE / "results" / "core.json"), help="results JSON path")
    ap.add_argument(
        "--workdir", default="/tmp/likewise-corebench", help="data and the systems' directories"
    )
    ap.add_argument(
        "--rounds", type=int, default=3, help="serve rounds per size, systems interleaved in each"
    )
    ap.add_argument(
        "--warmup", type=int, default=200, help="warm-up queries before each timed loop"
    )
    ap.add_argument(
        "--loop-budget",
        type=float,
        default=45.0,
        help="seconds after which a slow query loop stops (>= 200 queries)",
    )
    ap.add_argument(
        "--min-loop-s",
        type=float,
        default=1.0,
        help="a timed query loop repeats its queries until this many seconds have passed",
    )
    ap.add_argument(
        "--chroma-ef", type=int, default=100, help="chroma ef_search (fixed at collection creation)"
    )
    ap.add_argument(
        "--no-metadata-indexes",
        action="store_true",
        help="do not declare likewise metadata indexes",
    )
    ap.add_argument(
        "--faiss-build-max",
        type=int,
        default=200_000,
        help="above this size raw faiss serves likewise's own snapshot graph instead of building its own",
    )
    ap.add_argument(
        "--skip",
        default="",
        help="system@size pairs to leave out, e.g. chroma@1000000 (recorded in the results)",
    )
    ap.add_argument(
        "--builds-from",
        help="results JSON of an earlier run (with --keep): reuse its builds whose directories still exist; tune and serve again",
    )
    ap.add_argument(
        "--skip-note", default="", help="why --skip left systems out (recorded in the results)"
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the systems' directories after each size"
    )
    ap.add_argument(
        "--corpus",
        nargs=2,
        type=Path,
        metavar=("DOCS.npy", "QUERIES.npy"),
        help="real embeddings instead of synthetic data: index every row of DOCS.npy, query with"
        " --queries rows of QUERIES.npy (replaces --sizes)",
    )
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument(
        "--report", nargs="+", help="print markdown tables from these results files and exit"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--system", help=argparse.SUPPRESS)
    ap.add_argument("--ctx", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.report:
        print(markdown([json.loads(Path(p).read_text()) for p in args.report]))
        return
    if args.worker:
        worker(args.worker, args.system, Path(args.ctx), Path(args.result))
        return

    corpus: tuple[Path, Path] | None = tuple(args.corpus) if args.corpus else None  # type: ignore[assignment]
    if corpus:
        shape = np.load(corpus[0], mmap_mode="r").shape
        sizes, args.dim = [int(shape[0])], int(shape[1])
    else:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r}; known: {', '.join(SYSTEMS)}")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    prev_builds = json.loads(Path(args.builds_from).read_text()) if args.builds_from else {}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cfg = {"chroma_ef": args.chroma_ef, "likewise_metadata_indexes": not args.no_metadata_indexes}
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": versions(),
        "parameters": {
            "k": K,
            "batch": BATCH,
            "dim": args.dim,
            "queries": args.queries,
            "warmup": args.warmup,
            "min_loop_s": args.min_loop_s,
            "rounds": args.rounds,
            "hnsw": {"M": M, "efConstruction": EF_CONSTRUCTION, "efSearch_default": EF_DEFAULT},
            "chroma": {
                "space": "ip",
                "max_neighbors": M,
                "ef_construction": EF_CONSTRUCTION,
                "ef_search_at_creation": args.chroma_ef,
                "ef_search_served": f"the smallest of {CHROMA_EFS} reaching recall 0.95 on 300 queries,"
                " set by collection.modify and a reopen",
            },
            "lancedb": {
                "index": "IVF_HNSW_SQ",
                "metric": "dot",
                "m": M,
                "ef_construction": EF_CONSTRUCTION,
                "partitions": "max(1, n // 100000)",
                "scalar": "BITMAP on cat10, cat100",
                "prefilter": True,
            },
            "likewise": {
                "metric": "cosine",
                "synchronous": "FULL",
                "api": "Index.upsert_arrays / Index.query",
                "metadata_indexes": cfg["likewise_metadata_indexes"],
            },
            "data": {"corpus": [str(p) for p in corpus]} if corpus else {
                "latent": LATENT,
                "centres": CENTRES,
                "latent_noise": 0.5,
                "ambient_noise": 0.05,
                "seed": SEED,
            },
            "filters": {
                "10%": "cat10 == query_no % 10 (cat10 = i % 10)",
                "1%": "cat100 == query_no % 100 (cat100 = i % 100)",
            },
        },
        "sizes": {},
    }

    def save() -> None:
        tmp = out_path.with_name(out_path.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        os.replace(tmp, out_path)

    for n in sizes:
        print(f"== {n} vectors: data", flush=True)
        meta = make_data(workdir, n, args.dim, args.queries, corpus)
        size_rep: dict[str, Any] = {"data": meta, "systems": {s: {} for s in systems}}
        report["sizes"][str(n)] = size_rep
        save()
        ctxs = {}
        skipped = {p.split("@")[0] for p in args.skip.split(",") if p and int(p.split("@")[1]) == n}
        for system in systems:
            if system in skipped:
                size_rep["systems"][system] = {"skipped": args.skip_note or "left out by --skip"}
                continue
            sys_dir = workdir / f"{system}-{n}"
            prev_build = (
                (((prev_builds.get("sizes") or {}).get(str(n)) or {}).get("systems") or {})
                .get(system, {})
                .get("build")
            )
            reuse = bool(prev_build) and "error" not in prev_build and sys_dir.exists()
            if not reuse:
                shutil.rmtree(sys_dir, ignore_errors=True)
            ctx = {
                "data_dir": meta["dir"],
                "sys_dir": str(sys_dir),
                "n": n,
                "dim": args.dim,
                "nq": args.queries,
                "warmup": args.warmup,
                "loop_budget": args.loop_budget,
                "min_loop_s": args.min_loop_s,
                "cfg": cfg,
            }
            if system == "faiss" and n > args.faiss_build_max and "likewise" in ctxs:
                eng = sorted((Path(ctxs["likewise"]["sys_dir"]) / "engines").glob("*/state.json"))
                if eng:
                    ctx["faiss_reuse"] = str(eng[0].parent)
            ctxs[system] = ctx
            if reuse:
                print(f"-- {system} build: reused from {args.builds_from}", flush=True)
                b = dict(prev_build, reused_build_from=args.builds_from)
                if system == "likewise":
                    b["refresh"] = spawn("refresh", system, ctx, workdir, args.timeout)
            else:
                print(f"-- {system} build", flush=True)
                b = spawn("build", system, ctx, workdir, args.timeout)
            size_rep["systems"][system]["build"] = b
            print(
                "   ",
                {
                    k: (round(v, 3) if isinstance(v, float) else v)
                    for k, v in b.items()
                    if k != "stderr_tail"
                },
                flush=True,
            )
            save()
            if "error" in b:
                continue
            if system == "chroma":
                print("-- chroma tune (modify ef_search, probe in a fresh process)", flush=True)
                curve, chosen = [], None
                for ef in CHROMA_EFS:
                    spawn("setef", system, dict(ctx, ef=ef), workdir, args.timeout)
                    pr = spawn("probe", system, dict(ctx, ef=ef), workdir, args.timeout)
                    curve.append(pr)
                    if pr.get("recall", 0) >= TARGET_RECALL:
                        chosen = ef
                        break
                chosen = chosen or args.chroma_ef
                spawn("setef", system, dict(ctx, ef=chosen), workdir, args.timeout)
                size_rep["systems"][system]["tune"] = {"curve": curve, "chosen_ef": chosen}
                print("   ", json.dumps(size_rep["systems"][system]["tune"])[:600], flush=True)
                save()
            if SYSTEMS[system].get("tune") is not None:
                print(f"-- {system} tune", flush=True)
                t = spawn("tune", system, ctx, workdir, args.timeout)
                size_rep["systems"][system]["tune"] = t
                print("   ", json.dumps(t)[:600], flush=True)
                save()
        # serve rounds: systems interleaved; likewise and faiss at the default ef, and (when it differs)
        # at the smallest ef that reaches the recall target.
        # likewise and faiss at one setting run back to back (their ratio is taken within a
        # round), and every other round runs in reverse order, so a drift in machine load over a
        # round favours neither system.
        variants: list[tuple[str, str, dict[str, Any]]] = []
        defaults: list[tuple[str, str, dict[str, Any]]] = []
        targets: list[tuple[str, str, dict[str, Any]]] = []
        for system in systems:
            if system in skipped or "error" in size_rep["systems"][system].get(
                "build", {"error": 1}
            ):
                continue
            ctx = dict(ctxs[system])
            tune = size_rep["systems"][system].get("tune", {})
            if system in ("likewise", "faiss"):
                defaults.append((system, f"ef{EF_DEFAULT}", dict(ctx, ef=EF_DEFAULT)))
                target = tune.get("min_ef_for_target")
                if target and target != EF_DEFAULT:
                    targets.append((system, f"ef{target}", dict(ctx, ef=target)))
            elif system == "lancedb":
                variants.append((system, "tuned", dict(ctx, lance=tune.get("chosen"))))
            else:
                ef = tune.get("chosen_ef", args.chroma_ef)
                variants.append((system, f"ef{ef}", dict(ctx, ef=ef)))
        variants = defaults + targets + variants
        for r in range(args.rounds):
            for system, label, ctx in variants if r % 2 == 0 else variants[::-1]:
                print(f"-- serve round {r + 1}: {system} {label}", flush=True)
                res = spawn("serve", system, ctx, workdir, args.timeout)
                size_rep["systems"][system].setdefault("serve", {}).setdefault(label, []).append(
                    res
                )
                brief = {
                    m: (round(res[m]["qps"]), round(res[m]["recall"], 4))
                    for m in ("all", "c10", "c100")
                    if m in res
                }
                print(
                    "   ",
                    brief,
                    "open+first",
                    round(res.get("open_first_query_s", -1), 3),
                    "rss",
                    round(res.get("rss_end_mib", -1)),
                    flush=True,
                )
                save()
        for system in systems:
            if system in skipped:
                continue
            size_rep["systems"][system]["disk_mib_final"] = dir_mib(workdir / f"{system}-{n}")
        save()
        if not args.keep:
            for system in systems:
                shutil.rmtree(workdir / f"{system}-{n}", ignore_errors=True)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report["versions_at_end"] = (
        versions()
    )  # the tree may change under a long run; compare with "versions"
    save()
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Compare ANN engines for likewise: faiss HNSW, hnswlib, usearch, exact search.

Unfiltered and filtered (attribute equality, 10% and 1% selectivity) search on the
same data, one query per call from a Python loop, as a library user would call it.

Run with the benchmark venv (not the project venv):

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install numpy faiss-cpu hnswlib usearch psutil
    .venv-bench/bin/python benchmarks/bench_engines.py --n 100000 --out results.md

Data: synthetic clustered unit vectors (deterministic seed), and, when present, real
MiniLM vectors: --real FILE.npy (default bench-data/debian-minilm.npy; 1,000 random rows
are held out as queries), or else bench-data/debian-document-minilm.npy as the base set
with queries sampled from bench-data/debian-synopsis-minilm.npy (benchmarks/corpus.py
writes both). --real-only skips the synthetic set.

Every ANN engine is built and measured in its own fresh process, so RSS deltas are clean.
Timings: wall-clock QPS/p50/p99 per call and process CPU time per query (the latter is
the robust comparator on a busy shared machine).

Outputs a markdown report (--out) and the raw numbers as JSON (same name, .json).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def _argv_value(name: str, default: str) -> str:
    for i, a in enumerate(sys.argv):
        if a == name and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


# Thread pools must be sized before numpy/faiss load. OpenMP (faiss build) gets --threads;
# BLAS is only used by the single-query exact baselines, which get --query-threads.
os.environ.setdefault("OMP_NUM_THREADS", _argv_value("--threads", "2"))
for _v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, _argv_value("--query-threads", "1"))

import numpy as np

EF_UNFILTERED = [16, 24, 32, 48, 64, 96, 128, 256]
EF_FILTERED = [16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 2048]
USEARCH_OVERSAMPLE = [1, 2, 4, 8, 16]
CROSSOVER_SELS = [0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002]


# ----------------------------------------------------------------------------- data


def make_clustered(
    n: int,
    nq: int,
    dim: int,
    n_centers: int,
    noise: float,
    decay: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors: centre + anisotropic Gaussian noise, normalised.

    Each cluster has its own dominant noise axes (a per-cluster permutation of a
    power-law spectrum sigma_j ~ j^-decay, scaled to total norm `noise`), so the
    data has a low local intrinsic dimension like real sentence embeddings.
    decay=0 gives isotropic noise. Queries are fresh draws from the same clusters.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_centers, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    spectrum = np.arange(1, dim + 1, dtype=np.float64) ** (-decay)
    spectrum *= noise / np.sqrt((spectrum**2).sum())
    spectrum = spectrum.astype(np.float32)
    perms = np.argsort(rng.random((n_centers, dim)), axis=1)
    scales = spectrum[perms]  # (n_centers, dim): per-cluster noise std per axis

    def draw(m: int, r: np.random.Generator) -> np.ndarray:
        out = np.empty((m, dim), dtype=np.float32)
        chunk = 20_000
        for s in range(0, m, chunk):
            e = min(m, s + chunk)
            c = r.integers(0, n_centers, e - s)
            z = r.standard_normal((e - s, dim), dtype=np.float32)
            v = centers[c] + z * scales[c]
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            out[s:e] = v
        return out

    base = draw(n, np.random.default_rng(seed + 1))
    queries = draw(nq, np.random.default_rng(seed + 2))
    return base, queries


def load_real(path: Path, n: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.load(path).astype(np.float32, copy=False)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    nq = min(nq, len(X) // 10)
    q = X[perm[:nq]]
    base = X[perm[nq:]][:n]
    return np.ascontiguousarray(base), np.ascontiguousarray(q)


def load_real_pair(
    docs: Path, queries: Path, n: int, nq: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Documents as the base set, a random sample of the synopses (a natural query) as queries."""
    X = np.load(docs).astype(np.float32)[:n]
    S = np.load(queries).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    q = S[rng.choice(len(S), size=min(nq, len(S)), replace=False)]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.ascontiguousarray(X), np.ascontiguousarray(q)


def exact_topk(X: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(Q), k), dtype=np.int64)
    for s in range(0, len(Q), 256):
        S = Q[s : s + 256] @ X.T
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(S, part, axis=1)
        order = np.argsort(-ps, axis=1)
        out[s : s + 256] = np.take_along_axis(part, order, axis=1)
    return out


@dataclass
class FilterCase:
    """An equality filter `attr == value`; each query gets one random value."""

    name: str
    selectivity: float  # nominal fraction of n that passes
    n_values: int
    attr: np.ndarray  # (n,) int
    qvalue: np.ndarray  # (nq,) int
    idx: list[np.ndarray] = field(default_factory=list)  # per value: passing ids
    gt: np.ndarray | None = None  # (nq, k) exact filtered top-k

    def mask(self, v: int) -> np.ndarray:
        return self.attr == v

    @property
    def mean_pass(self) -> float:
        return float(np.mean([len(i) for i in self.idx]))


def make_filter_case(
    selectivity: float, X: np.ndarray, Q: np.ndarray, k: int, seed: int
) -> FilterCase:
    n = len(X)
    n_values = int(round(1 / selectivity))
    rng = np.random.default_rng(seed + int(n_values))
    attr = rng.integers(0, n_values, n)
    qvalue = rng.integers(0, n_values, len(Q))
    fc = FilterCase(f"{selectivity:g}", selectivity, n_values, attr, qvalue)
    order = np.argsort(attr, kind="stable")
    bounds = np.searchsorted(attr[order], np.arange(n_values + 1))
    fc.idx = [np.sort(order[bounds[v] : bounds[v + 1]]) for v in range(n_values)]
    gt = np.full((len(Q), k), -1, dtype=np.int64)
    for v in np.unique(qvalue):
        qs = np.flatnonzero(qvalue == v)
        ids = fc.idx[v]
        kk = min(k, len(ids))
        sub = exact_topk(X[ids], Q[qs], kk)
        gt[qs, :kk] = ids[sub]
    fc.gt = gt
    return fc


# ----------------------------------------------------------------------- measuring


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def measure_memory(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """Run fn; return (result, seconds, peak RSS delta MiB, retained RSS delta MiB)."""
    gc.collect()
    rss0 = _status_kib("VmRSS")
    try:  # reset the peak-RSS watermark (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    t = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t
    gc.collect()
    hwm = _status_kib("VmHWM") if reset else _status_kib("VmRSS")
    rss1 = _status_kib("VmRSS")
    return res, dt, (hwm - rss0) / 1024, (rss1 - rss0) / 1024


@dataclass
class Point:
    engine: str
    scenario: str  # "unfiltered" or "sel=0.1" ...
    param: str  # "ef=64", "exact", "oversample=4"
    recall: float
    qps: float
    p50_ms: float
    p99_ms: float
    queries: int
    violations: int = 0  # returned ids that fail the filter
    short: float = 0.0  # mean number of missing results (< k returned)
    cpu_us: float = 0.0  # mean process CPU time per query (robust to a busy machine)


def run_queries(
    search: Callable[[np.ndarray, int], np.ndarray],
    Q: np.ndarray,
    gt: np.ndarray,
    k: int,
    budget_s: float,
    min_queries: int,
    allowed: Callable[[int, np.ndarray], np.ndarray] | None = None,
    X: np.ndarray | None = None,
) -> tuple[float, float, float, float, int, int, float, float]:
    """One query per call. Stops early once budget_s is spent (after min_queries).

    Recall counts a returned id as a hit when it is in the exact top-k or, with X given,
    when its score ties the k-th exact score (within 1e-5): real corpora hold duplicate
    vectors, and which of several equal-scored ids is "the" k-th neighbour is arbitrary.
    """
    for i in range(min(10, len(Q))):  # warm-up
        search(Q[i], i)
    lat = []
    cpu = 0.0
    hits = 0
    total = 0
    viol = 0
    short = 0
    t_start = time.perf_counter()
    for i in range(len(Q)):
        c0 = time.process_time()
        t0 = time.perf_counter()
        ids = search(Q[i], i)
        t1 = time.perf_counter()
        cpu += time.process_time() - c0
        lat.append(t1 - t0)
        ids = np.asarray(ids).ravel()
        ids = ids[ids >= 0]
        g = gt[i][gt[i] >= 0]
        ok = np.ones(len(ids), dtype=bool) if allowed is None else allowed(i, ids)
        if X is not None and len(ids) and len(g):
            kth = float(X[g[-1]] @ Q[i])
            h = int(((X[ids] @ Q[i] >= kth - 1e-5) & ok).sum())
        else:
            h = len(np.intersect1d(ids[ok], g))
        hits += min(h, len(g))
        total += len(g)
        short += len(g) - min(len(ids), len(g))
        if allowed is not None and len(ids):
            viol += int((~allowed(i, ids)).sum())
        if t1 - t_start > budget_s and i + 1 >= min_queries:
            break
    lat_a = np.array(lat)
    m = len(lat_a)
    return (
        hits / max(total, 1),
        m / lat_a.sum(),
        float(np.percentile(lat_a, 50) * 1e3),
        float(np.percentile(lat_a, 99) * 1e3),
        m,
        viol,
        short / m,
        cpu / m * 1e6,
    )


# ------------------------------------------------------------------------- engines


class Engine:
    name = "?"
    sweep_name = "ef"

    def build(self, X: np.ndarray) -> None: ...
    def set_ef(self, ef: int) -> None: ...
    def search(self, q: np.ndarray, k: int) -> np.ndarray: ...
    # filtered: prepare per FilterCase, then search_filtered(q, k, value)
    def prepare_filter(self, fc: FilterCase) -> None: ...
    def search_filtered(self, q: np.ndarray, k: int, v: int) -> np.ndarray: ...

    filtered_supported = True
    filtered_note = ""


class FaissHNSW(Engine):
    name = "faiss IndexHNSWFlat"

    def __init__(self, M: int, efc: int, threads: int) -> None:
        import faiss

        self.faiss = faiss
        faiss.omp_set_num_threads(threads)
        self.M, self.efc = M, efc
        self.params: list[Any] = []
        self.sels: list[Any] = []
        self.bitmaps: list[np.ndarray] = []

    def build(self, X: np.ndarray) -> None:
        f = self.faiss
        self.index = f.IndexHNSWFlat(X.shape[1], self.M, f.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.efc
        self.index.add(X)

    def set_ef(self, ef: int) -> None:
        self.index.hnsw.efSearch = ef
        for p in self.params:
            p.efSearch = ef

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(q[None, :], k)[1][0]

    def prepare_filter(self, fc: FilterCase) -> None:
        # One bitmap + selector + params object per attribute value, cached.
        f = self.faiss
        n = len(fc.attr)
        self.bitmaps, self.sels, self.params, self.flat_params = [], [], [], []
        for v in range(fc.n_values):
            mask = np.zeros(n, dtype=bool)
            mask[fc.idx[v]] = True
            bm = np.packbits(mask, bitorder="little")
            sel = f.IDSelectorBitmap(bm)
            self.bitmaps.append(bm)
            self.sels.append(sel)
            self.params.append(f.SearchParametersHNSW(sel=sel, efSearch=16))
            self.flat_params.append(f.SearchParameters(sel=sel))

    def search_filtered(self, q: np.ndarray, k: int, v: int) -> np.ndarray:
        return self.index.search(q[None, :], k, params=self.params[v])[1][0]

    def search_flat_selector(self, q: np.ndarray, k: int, v: int) -> np.ndarray:
        return self.index.storage.search(q[None, :], k, params=self.flat_params[v])[1][0]


class Hnswlib(Engine):
    name = "hnswlib"

    def __init__(self, M: int, efc: int, threads: int) -> None:
        import hnswlib

        self.hnswlib = hnswlib
        self.M, self.efc, self.threads = M, efc, threads
        self.filters: list[Callable[[int], Any]] = []

    def build(self, X: np.ndarray) -> None:
        p = self.hnswlib.Index(space="ip", dim=X.shape[1])
        p.init_index(max_elements=len(X), ef_construction=self.efc, M=self.M)
        p.set_num_threads(self.threads)
        p.add_items(X, np.arange(len(X)))
        self.index = p

    def set_ef(self, ef: int) -> None:
        self.index.set_ef(ef)

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        return self.index.knn_query(q, k=k, num_threads=1)[0][0]

    def prepare_filter(self, fc: FilterCase) -> None:
        # Cheapest Python callable: bound bytes.__getitem__ (C-level, returns 0/1).
        n = len(fc.attr)
        self.filters = []
        for v in range(fc.n_values):
            m = np.zeros(n, dtype=np.uint8)
            m[fc.idx[v]] = 1
            self.filters.append(m.tobytes().__getitem__)

    def search_filtered(self, q: np.ndarray, k: int, v: int) -> np.ndarray:
        try:
            return self.index.knn_query(q, k=k, num_threads=1, filter=self.filters[v])[0][0]
        except RuntimeError:  # hnswlib raises when it finds fewer than k results
            return np.empty(0, dtype=np.int64)


class USearch(Engine):
    name = "usearch"
    filtered_supported = False
    filtered_note = (
        "usearch's Python API has no filter/predicate argument (its numba hook is for "
        "custom metrics only); reported instead: post-filtering of an oversampled "
        "unfiltered search (count = k/selectivity x oversample)."
    )

    def __init__(self, M: int, efc: int, threads: int) -> None:
        from usearch.index import Index

        self.Index = Index
        self.M, self.efc, self.threads = M, efc, threads

    def build(self, X: np.ndarray) -> None:
        self.index = self.Index(
            ndim=X.shape[1],
            metric="ip",
            dtype="f32",
            connectivity=self.M,
            expansion_add=self.efc,
            expansion_search=64,
        )
        self.index.add(np.arange(len(X)), X, threads=self.threads)

    def set_ef(self, ef: int) -> None:
        self.index.expansion_search = ef

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(q, k, threads=1).keys

    def prepare_filter(self, fc: FilterCase) -> None:
        self.fc = fc
        self.masks = [fc.mask(v) for v in range(fc.n_values)]

    def search_postfilter(self, q: np.ndarray, k: int, v: int, count: int) -> np.ndarray:
        keys = self.index.search(q, count, threads=1).keys
        keys = keys[self.masks[v][keys]]
        return keys[:k]


# ---------------------------------------------------------------------------- main


def fmt_table(points: list[Point], k: int, with_scenario: bool = False) -> str:
    sc_h, sc_s = ("scenario | ", "---|") if with_scenario else ("", "")
    rows = [
        f"| {sc_h}engine | setting | recall@{k} | QPS | p50 ms | p99 ms | CPU µs/query | queries |",
        f"|{sc_s}---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        extra = ""
        if p.violations:
            extra += f" ({p.violations} filter violations)"
        if p.short >= 0.05:
            extra += f" (avg {p.short:.1f} results missing)"
        sc = f"{p.scenario} | " if with_scenario else ""
        rows.append(
            f"| {sc}{p.engine} | {p.param}{extra} | {p.recall:.3f} | {p.qps:,.0f} | "
            f"{p.p50_ms:.3f} | {p.p99_ms:.3f} | {p.cpu_us:,.0f} | {p.queries} |"
        )
    return "\n".join(rows)


def log(*a: Any) -> None:
    print(*a, flush=True)


def log_point(p: Point) -> None:
    log(
        f"   {p.engine:40s} {p.scenario:9s} {p.param:26s} recall={p.recall:.3f} "
        f"qps={p.qps:8.0f} p50={p.p50_ms:.3f}ms p99={p.p99_ms:.3f}ms cpu={p.cpu_us:7.0f}us nq={p.queries}"
        + (f" VIOLATIONS={p.violations}" if p.violations else "")
    )


def allowed_fn(fc: FilterCase) -> Callable[[int, np.ndarray], np.ndarray]:
    return lambda i, ids: fc.attr[ids] == fc.qvalue[i]


def np_subset_search(
    X: np.ndarray, fc: FilterCase, k: int
) -> Callable[[np.ndarray, int], np.ndarray]:
    def f(q: np.ndarray, i: int) -> np.ndarray:
        ids = fc.idx[fc.qvalue[i]]
        sc = X[ids] @ q
        kk = min(k, len(ids))
        part = np.argpartition(-sc, kk - 1)[:kk]
        return ids[part[np.argsort(-sc[part])]]

    return f


class Bench:
    """Holds one dataset (vectors, queries, ground truth, filter cases) and measures."""

    def __init__(self, X, Q, gt, fcases, args) -> None:  # type: ignore[no-untyped-def]
        self.X, self.Q, self.gt, self.fcases, self.args = X, Q, gt, fcases, args
        self.k = args.k
        self.points: list[Point] = []

    def measure(self, engine, scenario, param, fn, g, allowed=None) -> Point:  # type: ignore[no-untyped-def]
        a = self.args
        p = Point(
            engine,
            scenario,
            param,
            *run_queries(fn, self.Q, g, self.k, a.budget, a.min_queries, allowed, self.X),
        )
        self.points.append(p)
        log_point(p)
        return p

    def sweep(self, engine, scenario, efs, set_ef, fn, g, allowed=None, full=False) -> None:  # type: ignore[no-untyped-def]
        for ef in efs:
            set_ef(ef)
            p = self.measure(engine, scenario, f"ef={ef}", fn, g, allowed)
            if p.recall >= self.args.target and not full:
                return

    def run_exact(self, sels: list[float]) -> None:
        import faiss

        X, k = self.X, self.k
        faiss.omp_set_num_threads(self.args.query_threads)

        def np_exact(q: np.ndarray, i: int) -> np.ndarray:
            s = X @ q
            part = np.argpartition(-s, k - 1)[:k]
            return part[np.argsort(-s[part])]

        self.measure("numpy exact (X @ q)", "unfiltered", "exact", np_exact, self.gt)
        flat = faiss.IndexFlatIP(X.shape[1])
        flat.add(X)
        self.measure(
            "faiss IndexFlatIP",
            "unfiltered",
            "exact",
            lambda q, i, flat=flat: flat.search(q[None], k)[1][0],
            self.gt,
        )
        for s in sels:
            fc = self.fcases[s]
            self.measure(
                "numpy exact on subset (X[idx] @ q)",
                f"sel={s:g}",
                "exact",
                np_subset_search(X, fc, k),
                fc.gt,
                allowed_fn(fc),
            )

    def run_engine(self, ename: str, sels: list[float], cross: list[float]) -> dict[str, Any]:
        a, X, k, n = self.args, self.X, self.k, len(self.X)
        eng: Engine = {"faiss": FaissHNSW, "hnswlib": Hnswlib, "usearch": USearch}[ename](
            a.M, a.ef_construction, a.threads
        )
        log(f"-- {eng.name}: building ...")
        c0 = time.process_time()
        _, bt, peak, kept = measure_memory(lambda: eng.build(X))
        cpu = time.process_time() - c0
        build = {
            "engine": eng.name,
            "build_s": bt,
            "vectors_per_s": n / bt,
            "build_cpu_s": cpu,
            "peak_rss_delta_mib": peak,
            "retained_rss_delta_mib": kept,
        }
        log(
            f"   build {bt:.1f}s ({n / bt:,.0f} vec/s, {cpu:.0f} CPU-s) "
            f"peak RSS +{peak:.0f} MiB, retained +{kept:.0f} MiB"
        )
        if isinstance(eng, FaissHNSW):  # single-query search runs on one thread anyway
            eng.faiss.omp_set_num_threads(a.query_threads)

        self.sweep(
            eng.name,
            "unfiltered",
            EF_UNFILTERED,
            eng.set_ef,
            lambda q, i: eng.search(q, k),
            self.gt,
            full=a.full_curve,
        )

        for s in sorted(set(sels) | (set(cross) if ename == "faiss" else set()), reverse=True):
            fc = self.fcases[s]
            scn = f"sel={s:g}"
            eng.prepare_filter(fc)
            if isinstance(eng, USearch):
                for m in USEARCH_OVERSAMPLE:
                    count = min(n, int(math.ceil(k / s * m)))
                    eng.set_ef(max(64, count))
                    p = self.measure(
                        eng.name + " post-filter (workaround)",
                        scn,
                        f"oversample={m} (count={count})",
                        lambda q, i, c=count, fc=fc: eng.search_postfilter(q, k, fc.qvalue[i], c),
                        fc.gt,
                        allowed_fn(fc),
                    )
                    if p.recall >= a.target:
                        break
                continue
            suffix = " + IDSelectorBitmap" if ename == "faiss" else " + filter callable"
            self.sweep(
                eng.name + suffix,
                scn,
                EF_FILTERED,
                eng.set_ef,
                lambda q, i, fc=fc: eng.search_filtered(q, k, fc.qvalue[i]),
                fc.gt,
                allowed_fn(fc),
            )
            if isinstance(eng, FaissHNSW):
                self.measure(
                    "faiss flat storage + IDSelectorBitmap",
                    scn,
                    "exact",
                    lambda q, i, fc=fc: eng.search_flat_selector(q, k, fc.qvalue[i]),
                    fc.gt,
                    allowed_fn(fc),
                )
                if s not in sels:  # crossover-only selectivity: numpy subset too
                    self.measure(
                        "numpy exact on subset (X[idx] @ q)",
                        scn,
                        "exact",
                        np_subset_search(X, fc, k),
                        fc.gt,
                        allowed_fn(fc),
                    )
        return build


def choose(
    points: list[Point], target: float
) -> tuple[dict[str, list[Point]], dict[str, list[str]]]:
    """Per scenario and engine: the first measured point reaching target, else the best."""
    groups: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        groups.setdefault((p.scenario, p.engine), []).append(p)
    chosen: dict[str, list[Point]] = {}
    missed: dict[str, list[str]] = {}
    for (scn, eng), ps in groups.items():
        ok = [p for p in ps if p.recall >= target]
        if ok:
            chosen.setdefault(scn, []).append(ok[0])
        else:
            best = max(ps, key=lambda p: p.recall)
            missed.setdefault(scn, []).append(eng)
            chosen.setdefault(scn, []).append(
                Point(
                    eng + " (target NOT reached; best shown)",
                    scn,
                    best.param,
                    best.recall,
                    best.qps,
                    best.p50_ms,
                    best.p99_ms,
                    best.queries,
                    best.violations,
                    best.short,
                    best.cpu_us,
                )
            )
    return chosen, missed


def worker(args: argparse.Namespace) -> int:
    """Child process: one engine, fresh interpreter, so RSS deltas are clean."""
    d = args.worker_dir
    X = np.load(d / "X.npy")
    Q = np.load(d / "Q.npy")
    gt = np.load(d / "gt.npy")
    with open(d / "fcases.pkl", "rb") as f:
        fcases = pickle.load(f)
    sels, cross = _sels(args)
    b = Bench(X, Q, gt, fcases, args)
    build = b.run_engine(args.worker, sels, cross)
    (d / f"result-{args.worker}.json").write_text(
        json.dumps({"build": build, "points": [asdict(p) for p in b.points]})
    )
    return 0


def _sels(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    sels = [float(s) for s in args.selectivities.split(",") if s]
    cross = [float(s) for s in args.crossover.split(",") if s]
    return sels, cross


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("bench-engines-results.md"))
    ap.add_argument("--engines", default="faiss,hnswlib,usearch,exact")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="threads for index builds")
    ap.add_argument(
        "--query-threads",
        type=int,
        default=1,
        help="OpenMP/BLAS threads while querying (one query per call)",
    )
    ap.add_argument("--centers", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=2.5, help="noise norm relative to centre norm")
    ap.add_argument("--decay", type=float, default=0.5, help="noise spectrum power-law decay")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--target", type=float, default=0.95, help="recall target")
    ap.add_argument("--budget", type=float, default=3.0, help="max seconds per measured point")
    ap.add_argument("--min-queries", type=int, default=200)
    ap.add_argument("--selectivities", default="0.1,0.01")
    ap.add_argument(
        "--full-curve",
        action="store_true",
        help="measure every unfiltered ef instead of stopping at the target",
    )
    ap.add_argument(
        "--crossover",
        default=",".join(map(str, CROSSOVER_SELS)),
        help="extra selectivities for the faiss HNSW+selector vs exact crossover ('' = off)",
    )
    ap.add_argument("--real", type=Path, default=Path("bench-data/debian-minilm.npy"))
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--real-only", action="store_true", help="skip the synthetic dataset")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    k = args.k
    results: dict[str, Any] = {"args": {k_: str(v) for k_, v in vars(args).items()}}
    results["env"] = env_info()
    results["loadavg_start"] = os.getloadavg()
    md: list[str] = []

    datasets: list[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]] = [
        (
            f"synthetic clustered (n={args.n:,}, dim={args.dim}, {args.centers} centres, "
            f"noise={args.noise}, decay={args.decay}, seed={args.seed})",
            lambda: make_clustered(
                args.n, args.queries, args.dim, args.centers, args.noise, args.decay, args.seed
            ),
        )
    ]
    docs_npy = args.real.parent / "debian-document-minilm.npy"
    syn_npy = args.real.parent / "debian-synopsis-minilm.npy"
    if args.no_real:
        pass
    elif args.real.exists():
        datasets.append(
            (
                f"real: {args.real} (MiniLM, held-out rows as queries)",
                lambda: load_real(args.real, args.n, args.queries, args.seed),
            )
        )
    elif docs_npy.exists() and syn_npy.exists():
        datasets.append(
            (
                f"real: Debian package descriptions, MiniLM ({docs_npy.name}; queries: "
                f"{args.queries} random package synopses from {syn_npy.name})",
                lambda: load_real_pair(docs_npy, syn_npy, args.n, args.queries, args.seed),
            )
        )
    else:
        log(f"[info] {args.real} absent: real-data scenario skipped")
        md.append(f"_Real-data scenario skipped: `{args.real}` not present._\n")
    if args.real_only:
        datasets = datasets[1:]

    results["datasets"] = []
    t_all = time.perf_counter()
    for ds_name, loader in datasets:
        log(f"== dataset: {ds_name}")
        t = time.perf_counter()
        X, Q = loader()
        n = len(X)
        log(f"   data {X.shape} queries {Q.shape} in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        gt = exact_topk(X, Q, k)
        sels, cross = _sels(args)
        if "faiss" not in engines:
            cross = []
        fcases = {
            s: make_filter_case(s, X, Q, k, args.seed) for s in sorted(set(sels) | set(cross))
        }
        log(f"   ground truth (unfiltered + {sorted(fcases)}) in {time.perf_counter() - t:.1f}s")

        bench = Bench(X, Q, gt, fcases, args)
        builds: list[dict[str, Any]] = []
        if "exact" in engines:
            bench.run_exact(sels)
        ann = [e for e in engines if e in ("faiss", "hnswlib", "usearch")]
        if ann:
            with tempfile.TemporaryDirectory(prefix="bench-engines-") as td:
                d = Path(td)
                np.save(d / "X.npy", X)
                np.save(d / "Q.npy", Q)
                np.save(d / "gt.npy", gt)
                with open(d / "fcases.pkl", "wb") as f:
                    pickle.dump(fcases, f)
                passthrough = [a for a in sys.argv[1:]]
                for e in ann:
                    cmd = [
                        sys.executable,
                        os.path.abspath(__file__),
                        *passthrough,
                        "--worker",
                        e,
                        "--worker-dir",
                        str(d),
                    ]
                    rc = subprocess.run(cmd, check=False).returncode
                    rf = d / f"result-{e}.json"
                    if rc != 0 or not rf.exists():
                        log(f"!! worker {e} failed (rc={rc})")
                        md.append(f"_{e}: benchmark worker failed (rc={rc})._\n")
                        continue
                    r = json.loads(rf.read_text())
                    builds.append(r["build"])
                    bench.points.extend(Point(**p) for p in r["points"])

        pts = bench.points
        chosen, _missed = choose(pts, args.target)
        results["datasets"].append(
            {"name": ds_name, "n": n, "builds": builds, "points": [asdict(p) for p in pts]}
        )
        md.append(f"## {ds_name}\n")
        md.append(
            "### Build (each engine in a fresh process; RSS deltas measured around build only)\n"
        )
        md.append(
            "| engine | build s | vectors/s | build CPU s | peak RSS delta MiB | retained RSS delta MiB |"
        )
        md.append("|---|---:|---:|---:|---:|---:|")
        for b in builds:
            md.append(
                f"| {b['engine']} | {b['build_s']:.1f} | {b['vectors_per_s']:,.0f} | {b['build_cpu_s']:.0f} | "
                f"{b['peak_rss_delta_mib']:.0f} | {b['retained_rss_delta_mib']:.0f} |"
            )
        md.append(f"\n(raw float32 vectors: {X.nbytes / 2**20:.0f} MiB)\n")
        order = ["unfiltered"] + [f"sel={s:g}" for s in sorted(fcases, reverse=True)]
        for scn in [s for s in order if s in chosen]:
            title = "Unfiltered" if scn == "unfiltered" else f"Filtered, selectivity {scn[4:]}"
            if scn != "unfiltered":
                fc = fcases[float(scn[4:])]
                title += f" (~{fc.mean_pass:,.0f} of {n:,} pass; {fc.n_values} attribute values)"
            md.append(f"### {title}: smallest setting reaching recall@{k} >= {args.target}\n")
            md.append(fmt_table(chosen[scn], k))
            md.append("")
        md.append("### All measured points\n")
        md.append(fmt_table(pts, k, with_scenario=True))
        md.append("")
        del X, Q, gt, fcases, bench
        gc.collect()

    results["total_s"] = time.perf_counter() - t_all
    results["loadavg_end"] = os.getloadavg()
    header = [
        "# Engine benchmark results",
        "",
        f"Command: `{' '.join([Path(sys.executable).name] + sys.argv)}`",
        "",
        "Environment: " + ", ".join(f"{k_}={v}" for k_, v in results["env"].items()),
        "",
        f"Load average at start {tuple(round(x, 2) for x in results['loadavg_start'])}, "
        f"at end {tuple(round(x, 2) for x in results['loadavg_end'])} (shared machine).",
        "",
        f"Single-query loop (one query per call), k={k}, M={args.M}, "
        f"efConstruction/expansion_add={args.ef_construction}, build threads={args.threads}, "
        f"query threads={args.query_threads}, "
        f"budget {args.budget}s per point (min {args.min_queries} queries). "
        f"Total run time {results['total_s']:.0f}s.",
        "",
    ]
    if "usearch" in engines:
        header += [f"usearch filtered search: {USearch.filtered_note}", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + md) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    log(f"wrote {args.out} and {args.out.with_suffix('.json')} in {results['total_s']:.0f}s total")
    return 0


def env_info() -> dict[str, str]:
    info: dict[str, str] = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("faiss", "hnswlib", "usearch", "psutil"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "?")
        except Exception:  # pragma: no cover
            info[mod] = "absent"
    try:
        from importlib.metadata import version

        info["hnswlib"] = version("hnswlib")
    except Exception:
        pass
    try:
        import faiss

        info["faiss_simd"] = faiss.get_compile_options()
    except Exception:
        pass
    try:
        from usearch.index import Index

        info["usearch_simd"] = Index(ndim=8, metric="ip", dtype="f32").hardware_acceleration
    except Exception:
        pass
    info["cpus"] = str(os.cpu_count())
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


if __name__ == "__main__":
    raise SystemExit(main())

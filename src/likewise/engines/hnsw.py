"""The ANN part of an engine: a faiss HNSW graph, its filtered search, and its snapshot files.

faiss was chosen by benchmark (docs/benchmarks.md, "engines"): it is as fast as hnswlib unfiltered,
and, unlike hnswlib's Python callback, applies a filter bitmap in C++ inside both the HNSW walk and
the exact scan of the same stored vectors, so one copy of the vectors serves both plans.

The graph is a cache. A snapshot is written as generation-numbered files plus a ``state.json`` that
is replaced atomically last; a crash at any point leaves either the old or the new snapshot, and a
damaged one is detected (sizes, counts, faiss' own parser) and rebuilt from SQLite.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import threading
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

# faiss' SWIG stubs lack SearchParametersHNSW, selectors and get_xb: use it untyped.
faiss: Any = _faiss

__all__ = [
    "HnswGraph", "Snapshot", "bitmap_selector", "exact_rows", "faiss_metric", "load_snapshot", "release_freed_memory", "save_snapshot",
    "squared_norm", "unit",
]


def faiss_metric(metric: str) -> int:
    """faiss metric for a likewise metric: cosine (on unit vectors) and dot-product use inner product."""
    return int(faiss.METRIC_L2 if metric == "euclidean" else faiss.METRIC_INNER_PRODUCT)


def bitmap_selector(bits: np.ndarray, n: int) -> Any:
    """A faiss selector over positions ``0..n-1`` from a little-endian packed bitmap.

    The selector points into ``bits``; the caller keeps ``bits`` alive while searching.
    """
    return faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))


def squared_norm(vector: np.ndarray) -> float:
    """Sum of squares of a contiguous float32 vector, by faiss' kernel (float32; inf or nan for
    bad input, with no numpy warning): the query path's validity check costs 0.5 µs this way."""
    return float(faiss.fvec_norm_L2sqr(faiss.swig_ptr(vector), len(vector)))


def unit(vector: np.ndarray) -> np.ndarray:
    """A unit-length copy of a float32 vector whose sum of squares is finite and positive."""
    out = vector.copy()
    faiss.fvec_renorm_L2(len(out), 1, faiss.swig_ptr(out))
    return out


class HnswGraph:
    """A faiss ``IndexHNSWFlat`` over engine positions ``0 .. ntotal-1``."""

    def __init__(self, dimensions: int, metric: str, m: int = 16, ef_construction: int = 128,
                 index: Any | None = None) -> None:
        self.metric = metric
        if index is None:
            index = faiss.IndexHNSWFlat(dimensions, m, faiss_metric(metric))
            index.hnsw.efConstruction = ef_construction
        self.index = index
        self._params: dict[int, Any] = {}

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, matrix: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(matrix, dtype=np.float32))

    def vectors(self) -> np.ndarray:
        """A read-only view of the stored vectors (no copy)."""
        n, d = self.ntotal, self.index.d
        if n == 0:
            return np.empty((0, d), dtype=np.float32)
        flat = faiss.downcast_index(self.index.storage)
        view = faiss.rev_swig_ptr(flat.get_xb(), n * d)
        return np.asarray(view).reshape(n, d)

    def search(self, query: np.ndarray, k: int, ef: int, bits: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """HNSW search, restricted to the packed bitmap ``bits`` when given. Returns distances, positions."""
        if bits is None:
            params = self._params.get(ef)
            if params is None:  # read-only once made, so one object per ef serves every thread
                params = self._params[ef] = faiss.SearchParametersHNSW(efSearch=ef)
        else:
            sel = bitmap_selector(bits, self.ntotal)
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
        # search_c directly: faiss' Python wrapper re-checks shapes and dtypes we already hold.
        q = np.ascontiguousarray(query, dtype=np.float32)
        dist = np.empty(k, dtype=np.float32)
        pos = np.empty(k, dtype=np.int64)
        self.index.search_c(1, faiss.swig_ptr(q), k, faiss.swig_ptr(dist), faiss.swig_ptr(pos), params)
        return dist, pos

    def exact(self, query: np.ndarray, k: int, positions: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the stored vectors at ``positions`` (all of them when ``None``).

        The candidates are scored in place by faiss (``knn_*_by_idx``): no copy of the rows and no
        pass over the positions that are not candidates. A large set is split across the cores
        (faiss releases the GIL), since one query's latency is what a caller waits for. Returns
        distances, positions, best first.
        """
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if positions is None:
            dist, pos = self.index.storage.search(q, k)
            return dist[0], pos[0]
        subset = np.ascontiguousarray(positions, dtype=np.int64)
        return _split_scan(q, k, len(subset), self.metric, lambda a, b: self._exact_part(q, k, subset[a:b]))

    def _exact_part(self, q: np.ndarray, k: int, subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vals = np.empty(k, dtype=np.float32)
        ids = np.empty(k, dtype=np.int64)
        flat = faiss.downcast_index(self.index.storage)
        search = faiss.knn_L2sqr_by_idx if self.metric == "euclidean" else faiss.knn_inner_products_by_idx
        search(
            faiss.swig_ptr(q), flat.get_xb(), faiss.swig_ptr(subset), self.index.d, 1, self.ntotal,
            len(subset), k, faiss.swig_ptr(vals), faiss.swig_ptr(ids),
        )
        return vals, ids


def exact_rows(query: np.ndarray, k: int, rows: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact search over a contiguous float32 matrix (a candidate set's copy, see
    :mod:`.planner`): the same faiss distances as :meth:`HnswGraph.exact` (up to rounding, for
    the few small dimensions faiss computes in blocks of rows), but the rows are read front to back
    instead of one scattered row at a time. Returns distances and row numbers, best first."""
    q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    d = rows.shape[1]
    search = faiss.knn_L2sqr if metric == "euclidean" else faiss.knn_inner_product

    def part(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, b - a)
        vals = np.empty(kk, dtype=np.float32)
        ids = np.empty(kk, dtype=np.int64)
        search(faiss.swig_ptr(q), faiss.swig_ptr(rows[a:b]), d, 1, b - a, kk, faiss.swig_ptr(vals), faiss.swig_ptr(ids))
        return vals, ids + a

    return _split_scan(q, k, len(rows), metric, part)


def _split_scan(
    q: np.ndarray, k: int, n: int, metric: str, part: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``part(a, b)`` (top-k of items ``a .. b-1``) over ``0 .. n-1``, split across the cores
    when the set is large (faiss releases the GIL), since one query's latency is what a caller
    waits for; merge the parts, ties to the lower number."""
    parts = min(_CORES, n // PARALLEL_EXACT_MIN)
    if parts <= 1:
        return part(0, n)
    bounds = np.linspace(0, n, parts + 1).astype(np.int64).tolist()
    results = list(_pool().map(lambda ab: part(*ab), itertools.pairwise(bounds)))
    dist = np.concatenate([r[0] for r in results])
    pos = np.concatenate([r[1] for r in results])
    valid = pos >= 0
    dist, pos = dist[valid], pos[valid]
    key = dist if metric == "euclidean" else -dist
    order = np.lexsort((pos, key))[:k]
    return dist[order], pos[order]


_CORES = os.cpu_count() or 1
PARALLEL_EXACT_MIN = 4096  # candidates per thread below which splitting costs more than it saves
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_CORES, thread_name_prefix="likewise-exact")
        return _POOL


@dataclass(frozen=True)
class Snapshot:
    graph: HnswGraph
    labels: np.ndarray  # label of each position of the graph
    # What the engine knew of those positions when it saved (ids, liveness, metadata columns), so
    # that an open need not scan SQLite; None for snapshots without it (then SQLite is read).
    extras: dict[str, np.ndarray] | None = None
    note: str = ""


def release_freed_memory() -> None:
    """Hand memory that was freed back to the OS (glibc's ``malloc_trim``; elsewhere a no-op).

    Opening a snapshot allocates and frees tens of megabytes of file buffers; glibc keeps such
    freed heap pages, which would count in the resident size of a process that only serves.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _malloc_trim() -> Any:
    global _TRIM
    if _TRIM is False:
        try:
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            _TRIM = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
        except OSError:
            _TRIM = None
    return _TRIM


_TRIM: Any = False  # not looked up yet


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_crc32(path: Path) -> int:
    """CRC-32 of a whole file, read into one reused 1 MiB buffer.

    One buffer rather than a new ``bytes`` per block: freed multi-megabyte blocks raise glibc's
    mmap threshold, after which they are kept in the heap and the process stays ~25 MiB larger.
    """
    crc = 0
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        while got := fh.readinto(buffer):
            crc = zlib.crc32(view[:got], crc)
    return crc


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_snapshot(
    directory: Path, graph: HnswGraph, labels: np.ndarray, dimensions: int, extras: dict[str, np.ndarray] | None = None
) -> None:
    """Write the graph, its position→label map and ``extras`` as a new generation, then switch ``state.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    state_path = directory / "state.json"
    old = _read_state(state_path)
    generation = int(old.get("generation", 0)) + 1 if old else 1
    graph_path = directory / f"graph-{generation}.faiss"
    labels_path = directory / f"labels-{generation}.bin"
    tmp_graph = graph_path.with_name(graph_path.name + ".tmp")
    faiss.write_index(graph.index, str(tmp_graph))
    with open(tmp_graph, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp_graph, graph_path)
    label_bytes = np.ascontiguousarray(labels, dtype="<i8").tobytes()
    _write_atomic(labels_path, label_bytes)
    keep = {state_path.name, graph_path.name, labels_path.name}
    extra_state: dict[str, Any] = {}
    if extras is not None:
        extras_path = directory / f"extras-{generation}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, **extras)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
        extras_bytes = buffer.getvalue()
        _write_atomic(extras_path, extras_bytes)
        keep.add(extras_path.name)
        extra_state = {"extras_file": extras_path.name, "extras_crc32": zlib.crc32(extras_bytes)}
    state = {
        "format": 1,
        "generation": generation,
        "count": int(graph.ntotal),
        "dimensions": dimensions,
        "metric": graph.metric,
        "graph_file": graph_path.name,
        "graph_bytes": graph_path.stat().st_size,
        "graph_crc32": file_crc32(graph_path),
        "labels_file": labels_path.name,
        "labels_crc32": zlib.crc32(label_bytes),
        "max_label": int(labels[-1]) if len(labels) else 0,
        **extra_state,
    }
    _write_atomic(state_path, json.dumps(state).encode())
    _fsync_dir(directory)
    for stale in directory.iterdir():
        if stale.name not in keep:
            stale.unlink(missing_ok=True)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _load_extras(directory: Path, state: dict[str, Any], count: int) -> tuple[dict[str, np.ndarray] | None, str]:
    name = state.get("extras_file")
    if not name:
        return None, "no saved ids or columns"
    path = directory / str(name)
    try:
        data = path.read_bytes()
        if zlib.crc32(data) != state.get("extras_crc32"):
            return None, f"{path} fails its checksum"
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            extras = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        return None, f"{path} cannot be read: {exc}"
    if len(extras.get("alive", ())) != count or len(extras.get("id_offsets", ())) != count + 1:
        return None, f"{path} does not match the graph"
    return extras, "ok"


def load_snapshot(directory: Path, dimensions: int, metric: str) -> tuple[Snapshot | None, str]:
    """Load the current snapshot; ``(None, reason)`` when there is none or it does not check out.

    The graph file is checksummed in a second thread while faiss parses it (both release the GIL),
    and the parsed graph is only used once the checksum has matched.
    """
    state_path = directory / "state.json"
    if not state_path.exists():
        return None, "no snapshot"
    state = _read_state(state_path)
    if state.get("format") != 1:
        return None, f"{state_path} is unreadable"
    if state.get("dimensions") != dimensions or state.get("metric") != metric:
        return None, f"{state_path} describes another configuration"
    graph_path = directory / str(state.get("graph_file"))
    labels_path = directory / str(state.get("labels_file"))
    try:
        if graph_path.stat().st_size != state.get("graph_bytes"):
            return None, f"{graph_path} has the wrong size (torn write?)"
        label_bytes = labels_path.read_bytes()
    except OSError as exc:
        return None, f"snapshot file missing: {exc}"
    if zlib.crc32(label_bytes) != state.get("labels_crc32"):
        return None, f"{labels_path} fails its checksum"
    labels = np.frombuffer(label_bytes, dtype="<i8").astype(np.int64)
    if len(labels) > 1 and not np.all(labels[1:] > labels[:-1]):
        return None, f"{labels_path} is not in label order"
    with ThreadPoolExecutor(1, thread_name_prefix="likewise-crc") as pool:
        crc = pool.submit(file_crc32, graph_path)
        try:
            index = faiss.read_index(str(graph_path))
        except Exception as exc:  # faiss raises RuntimeError with its C++ message
            index, error = None, exc
        try:
            crc_ok = crc.result() == state.get("graph_crc32")
        except OSError as exc:
            return None, f"snapshot file missing: {exc}"
    if not crc_ok:
        return None, f"{graph_path} fails its checksum"
    if index is None:
        return None, f"{graph_path} cannot be read: {error}"
    if index.ntotal != state.get("count") or len(labels) != index.ntotal or index.d != dimensions:
        return None, f"{graph_path} does not match {state_path}"
    extras, note = _load_extras(directory, state, len(labels))
    return Snapshot(HnswGraph(dimensions, metric, index=index), labels, extras, note), "ok"

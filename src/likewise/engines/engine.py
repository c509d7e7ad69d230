"""The in-memory search engine of one index: positions, the HNSW graph, the unindexed tail, queries.

Every stored vector has a *position* (its order of arrival). Positions ``0 .. h-1`` live in the HNSW
graph (:mod:`.hnsw`); positions ``h .. n-1`` are the *tail*, plain float32 chunks searched exactly.
A background indexer moves full tail chunks into the graph, so writes return as soon as SQLite has
committed them and are visible to the very next query (the tail is searched exactly), while the graph
catches up. Deleted and replaced vectors are marked dead and skipped by a bitmap inside faiss; when
too many are dead the engine compacts (moves the living back to the tail and rebuilds).

Queries: a plain one searches the graph alone while the graph lock is held shared. A filtered one
becomes a candidate set, and the planner (:mod:`.planner`) picks sketch, cells, exact or
filtered-HNSW search for the set's graph positions; the tail is searched exactly and the two lists
are merged, so results are always the top-k of the filtered set (filter first, as Vectorize).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..filters import Filter, lookup
from .calibration import CALIBRATION_QUERIES, held_out
from .cells import SAMPLE_PER_CELL, Cells, cell_count
from .columns import Column, _Growable
from .hnsw import (
    HnswGraph,
    Snapshot,
    exact_rows,
    load_snapshot,
    release_freed_memory,
    save_snapshot,
)
from .ids import IdTable
from .planner import CandidateCache, Candidates, Plan, choose_plan, worth_copying
from .rwlock import SharedLock
from .sketches import Sketches

__all__ = ["EngineParams", "Plan", "StoreView", "VectorEngine"]

log = logging.getLogger("likewise.engine")

# ``source(key, after)``: labels, values and SQLite JSON types of a property for labels above ``after``.
ColumnSource = Callable[[str, int], tuple[np.ndarray, list[Any], list[str | None]]]
NamespaceSource = Callable[[int], tuple[np.ndarray, list[str | None]]]


class StoreView(Protocol):
    """What an engine reads from the store of its index when it opens."""

    def count_upto(self, label: int) -> int:
        """How many living vectors have a label ≤ ``label``."""

    def labels_upto(self, label: int) -> np.ndarray:
        """The living labels ≤ ``label``, ascending."""

    def labels_and_ids(self, upto: int) -> tuple[np.ndarray, list[str]]:
        """Living labels ≤ ``upto`` (ascending) and their ids."""

    def tail(self, after: int) -> Iterator[tuple[np.ndarray, list[str], np.ndarray]]:
        """``(labels, ids, matrix)`` batches of the vectors with labels above ``after``, in label order."""


@dataclass(frozen=True)
class EngineParams:
    """Tuning knobs; defaults come from benchmarks/bench_engines.py (docs/benchmarks.md)."""

    ann_threshold: int = 10_000  # below this many vectors, exact search only
    chunk: int = 1024  # tail rows moved into the graph per step (bounds the pause a query can see)
    m: int = 16
    ef_construction: int = 128
    ef_search: int = 64
    # Exact search for candidate sets up to max(exact_max_candidates, exact_sqrt_factor·√(k·n)):
    # the measured speed crossover with filtered HNSW grows with √n (docs/benchmarks-engines.md) and
    # sits at a factor of 5; 9 gives up ~1.3x in speed there for recall: filtered HNSW found 0.70 of
    # the top-10 when the query was far from the filter's members (bench_filtered.py, real MiniLM
    # vectors), exact finds all of them.
    exact_max_candidates: int = 5_000
    exact_sqrt_factor: float = 9.0
    # A candidate set queried again soon gets a contiguous copy of its rows, read front to back
    # (see .planner); all copies together stay within rows_cache_fraction of the graph's vector
    # bytes. A copied set is scanned exactly up to exact_rows_sqrt_factor·√(k·n) candidates: its
    # scan is ~2x cheaper a row than the scattered one (benchmarks/bench_exact_scan.py).
    rows_cache_fraction: float = 0.125
    exact_rows_sqrt_factor: float = 18.0
    # Filtered HNSW keeps only passing ids among those it meets, so it needs ef ≈ k/selectivity.
    # 1.0-1.3·k/sel reached recall 0.95 on the Debian MiniLM vectors and on bench_core's data (a
    # factor of 2 cost 2-3x in QPS for recall 0.997 there); 1.2 keeps a margin. Data with little
    # structure can need up to 5 (bench_engines' synthetic set): raise it through EngineParams.
    ef_filter_factor: float = 1.2
    max_ef: int = 2048
    # The cells plan (see .cells): for candidate sets of more than cells_min_candidates and up to
    # cells_max_selectivity of the graph, read the calibrated share of the cells holding candidates
    # (at least cells_floor_per_k·k candidates, from at least cells_min cells), when that share is
    # at most cells_max_share; beyond it an exact scan costs about the same and misses nothing.
    cells: bool = True
    cells_min_candidates: int = 2000
    cells_max_selectivity: float = 0.25
    cells_max_share: float = 0.15
    cells_floor_per_k: int = 20
    cells_min: int = 16
    # The sketch plan (see .sketches): for candidate sets of more than sketch_min_candidates and up
    # to sketch_sqrt_factor·√(k·n), rank the candidates by their 1-bit codes and score exactly the
    # calibrated share of them (at least sketch_floor_per_k·k), when that share is at most
    # sketch_max_share; beyond it an exact scan costs about the same and misses nothing. A set whose
    # codes show it crowded in one region of the space (spread under sketch_min_spread) is left to
    # the other plans: for a query far from it, its members' codes barely differ.
    sketches: bool = True
    sketch_min_candidates: int = 2000
    sketch_sqrt_factor: float = 18.0
    sketch_floor_per_k: int = 16
    sketch_max_share: float = 0.25
    sketch_min_spread: float = 0.7
    compact_dead_fraction: float = 0.3
    snapshot_every: int = 100_000  # newly indexed vectors between background snapshots
    background: bool = True


class VectorEngine:
    """Search structure of one index. Thread-safe; all state changes happen under one lock."""

    def __init__(
        self,
        dimensions: int,
        metric: str,
        params: EngineParams | None = None,
        column_source: ColumnSource | None = None,
        namespace_source: NamespaceSource | None = None,
        snapshot_dir: Path | None = None,
    ) -> None:
        self.dimensions = dimensions
        self.metric = metric
        self.params = params or EngineParams()
        self._column_source = column_source
        self._namespace_source = namespace_source
        self._snapshot_dir = snapshot_dir
        self._lock = threading.RLock()  # engine state: positions, tail, columns
        # The faiss graph: shared by plain queries, exclusive to everything else (taken before _lock).
        self._graph_lock = SharedLock()
        self._wake = threading.Condition(self._lock)
        self.labels = _Growable(np.int64)
        self.alive = _Growable(np.bool_)
        self.ids = IdTable()
        self.graph: HnswGraph | None = None
        self.cells: Cells | None = None  # covers graph positions 0 .. len(cells)-1 (all, when in use)
        self.sketches: Sketches | None = None  # likewise
        self._trained_unsaved = False  # cells or sketches trained since the last snapshot
        self._training_failed_at = -1  # graph size at a failed training: not retried before it grows
        self._training = threading.Lock()
        self.tail: list[np.ndarray] = []
        self.dead = 0
        self.columns: dict[str, Column] = {}
        self.namespaces: Column | None = None
        self._alive_mask_cache: np.ndarray | None = None
        self._version = 0  # bumped on every change of positions, liveness or graph coverage
        self._candidate_cache = CandidateCache()
        self._snapshot_count = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._plan: Plan | None = None
        self._lean_plan: tuple[int, int] | None = None  # (candidates, ef) of a lean query: no Plan object made

    @property
    def last_plan(self) -> Plan | None:
        """How the last query was answered (for tests, benchmarks and ``explain``)."""
        if self._lean_plan is not None:
            return Plan("hnsw", *self._lean_plan)
        return self._plan

    @last_plan.setter
    def last_plan(self, plan: Plan | None) -> None:
        self._lean_plan = None
        self._plan = plan

    # -- size -------------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Positions in use, dead ones included."""
        return self.labels.size

    @property
    def count(self) -> int:
        """Living vectors."""
        return self.size - self.dead

    @property
    def indexed(self) -> int:
        return self.graph.ntotal if self.graph is not None else 0

    # -- loading ----------------------------------------------------------------------------------

    def load(self, source: StoreView) -> str:
        """Restore from the snapshot (if valid) plus the SQLite rows it does not cover.

        A snapshot with its extras (ids, liveness, metadata columns of the graph's positions) opens
        with one ``count(*)`` on SQLite when nothing it covers was deleted since; otherwise the living
        labels (or, for older snapshots, labels and ids) are read. Returns what was done, for logs.
        """
        with self._lock:
            snap, reason = (None, "no snapshot directory")
            if self._snapshot_dir is not None:
                snap, reason = load_snapshot(self._snapshot_dir, self.dimensions, self.metric)
            after = 0
            if snap is not None:
                self.graph = snap.graph
                self._snapshot_count = snap.graph.ntotal
                after = int(snap.labels[-1]) if len(snap.labels) else 0
                if snap.extras is not None:
                    how = self._restore(snap, source, after)
                else:
                    how = self._restore_from_store(snap, source, after)
            else:
                how = f"rebuilt from SQLite ({reason})"
            replayed = 0
            for labels, ids, matrix in source.tail(after):
                self._append(labels, ids, self.prepare(matrix))
                replayed += len(labels)
            self._replay_columns(after, replayed)
            self._changed()
            self._kick()
        release_freed_memory()
        return f"{how}, {replayed} vectors replayed from the log"

    def _restore(self, snap: Snapshot, source: StoreView, after: int) -> str:
        extras = snap.extras
        assert extras is not None
        saved_alive = extras["alive"].astype(np.bool_)
        living = int(np.count_nonzero(saved_alive))
        # Labels are never reused and only go from living to dead, so the same count means the
        # same set: nothing the snapshot covers was deleted since it was written.
        if source.count_upto(after) == living:
            alive, how = saved_alive, "no deletions since"
        else:
            alive, how = self._present(snap.labels, source.labels_upto(after)), "deletions since read from SQLite"
        self.labels.extend(snap.labels)
        self.alive.extend(alive)
        self.dead = int(len(alive) - np.count_nonzero(alive))
        self.ids = IdTable(extras["id_offsets"].astype(np.int64), extras["id_blob"].tobytes())
        keys = json.loads(extras["column_keys"].tobytes().decode()) if "column_keys" in extras else []
        for i, key in enumerate(keys):
            self.columns[key] = Column.unpack({k[len(f"c{i}_"):]: v for k, v in extras.items() if k.startswith(f"c{i}_")})
        if "ns_kind" in extras:
            self.namespaces = Column.unpack({k[3:]: v for k, v in extras.items() if k.startswith("ns_")})
        if "cells_centroids" in extras and len(extras["cells_assignment"]) == snap.graph.ntotal:
            cells = {k[6:]: v for k, v in extras.items() if k.startswith("cells_")}
            if cells["centroids"].shape[1:] == (self.dimensions,) and "shares" in cells:
                self.cells = Cells.unpack(cells, self.metric)
        if "sketch_frequencies" in extras and len(extras["sketch_codes"]) == snap.graph.ntotal:
            sketches = {k[7:]: v for k, v in extras.items() if k.startswith("sketch_")}
            if sketches["centre"].shape == (self.dimensions,):
                self.sketches = Sketches.unpack(sketches)
        return f"snapshot of {snap.graph.ntotal} vectors ({how}; {len(keys)} metadata columns restored)"

    def _restore_from_store(self, snap: Snapshot, source: StoreView, after: int) -> str:
        store_labels, store_ids = source.labels_and_ids(after)
        present = self._present(snap.labels, store_labels)
        found = np.minimum(np.searchsorted(store_labels, snap.labels), max(len(store_labels) - 1, 0))
        self.labels.extend(snap.labels)
        self.alive.extend(present)
        self.ids = IdTable.of(
            [store_ids[p] if ok else "" for p, ok in zip(found.tolist(), present.tolist())]
        )
        self.dead = int((~present).sum())
        return f"snapshot of {snap.graph.ntotal} vectors ({snap.note}: ids read from SQLite)"

    @staticmethod
    def _present(labels: np.ndarray, living: np.ndarray) -> np.ndarray:
        if not len(living):
            return np.zeros(len(labels), dtype=np.bool_)
        at = np.minimum(np.searchsorted(living, labels), len(living) - 1)
        return np.asarray(living[at] == labels)

    def _replay_columns(self, after: int, replayed: int) -> None:
        """Extend the columns restored from a snapshot with the rows replayed after it."""
        for key in list(self.columns):
            col = self.columns[key]
            if self._column_source is None:
                del self.columns[key]
                continue
            _labels, values, types = self._column_source(key, after)
            if len(values) != replayed:  # not the rows just replayed: build it afresh when used
                del self.columns[key]
                continue
            col.extend_sqlite(values, types)
        if self.namespaces is not None:
            if self._namespace_source is None:
                self.namespaces = None
                return
            _labels, names = self._namespace_source(after)
            if len(names) != replayed:
                self.namespaces = None
                return
            self.namespaces.extend_sqlite(list(names), ["text" if n is not None else "null" for n in names])

    # -- writing ----------------------------------------------------------------------------------

    def prepare(self, matrix: np.ndarray) -> np.ndarray:
        """What the engine stores for these values: unit vectors for cosine, the values otherwise."""
        if self.metric != "cosine":
            return np.ascontiguousarray(matrix, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True).astype(np.float32)
        norms[norms == 0] = 1.0
        return np.ascontiguousarray(matrix / norms, dtype=np.float32)

    def _append(self, labels: np.ndarray, ids: Sequence[str], rows: np.ndarray) -> None:
        start = self.size
        self.labels.extend(labels)
        self.alive.extend(np.ones(len(labels), dtype=np.bool_))
        self.ids.extend(ids)
        chunk = self.params.chunk
        offset = 0
        if self.tail and len(self.tail[-1]) < chunk:
            room = chunk - len(self.tail[-1])
            self.tail[-1] = np.concatenate([self.tail[-1], rows[:room]])
            offset = room
        while offset < len(rows):
            self.tail.append(np.array(rows[offset : offset + chunk], dtype=np.float32))
            offset += chunk
        del start

    def add(
        self,
        labels: np.ndarray,
        ids: Sequence[str],
        rows: np.ndarray,
        namespaces: Sequence[str | None],
        metadata: Sequence[Mapping[str, Any] | None],
    ) -> None:
        """Append committed vectors (``rows`` already prepared) and their metadata to the columns."""
        if not len(labels):
            return
        with self._lock:
            if self.size and labels[0] <= self.labels.view[-1]:
                raise RuntimeError("labels must arrive in ascending order")
            self._append(labels, ids, rows)
            for key, col in self.columns.items():
                path = tuple(key.split("."))
                col.append(lookup(m, path) for m in metadata)
            if self.namespaces is not None:
                self.namespaces.append(namespaces)
            self._changed()
            self._kick()

    def remove(self, labels: np.ndarray) -> int:
        """Mark these labels dead; returns how many were living."""
        if not len(labels):
            return 0
        with self._lock:
            view = self.labels.view
            pos = np.searchsorted(view, labels)
            ok = pos < len(view)
            pos = pos[ok]
            pos = pos[view[pos] == labels[ok]]
            living = pos[self.alive.data[pos]]
            self.alive.data[living] = False
            self.dead += len(living)
            self._changed()
            self._kick()
            return len(living)

    # -- background indexing ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background indexer (when enabled)."""
        if self.params.background and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="likewise-indexer", daemon=True)
            self._thread.start()

    def _kick(self) -> None:
        self._wake.notify_all()

    def _pending(self, flush: bool) -> bool:
        if self._needs_compaction() or self._training_due():
            return True
        if not self.tail:
            return False
        if self.graph is None and self.count < self.params.ann_threshold:
            return False
        return flush or len(self.tail) > 1 or len(self.tail[0]) >= self.params.chunk

    def _needs_compaction(self) -> bool:
        p = self.params
        return self.dead > p.ann_threshold // 2 and self.dead > p.compact_dead_fraction * self.size

    def _cells_due(self) -> bool:
        """Whether the cells should be (re)trained: none yet, or the graph grew fourfold since."""
        return self.params.cells and self._due(self.cells)

    def _sketches_due(self) -> bool:
        """Whether the sketches should be (re)trained, on the same terms as the cells."""
        return self.params.sketches and self._due(self.sketches)

    def _due(self, trained: Cells | Sketches | None) -> bool:
        graph = self.graph
        if graph is None:
            return False
        h = graph.ntotal
        if h < self.params.ann_threshold or h <= self._training_failed_at:
            return False
        return trained is None or h >= 4 * trained.trained_on

    def _training_due(self) -> bool:
        return self._cells_due() or self._sketches_due()

    def _train(self) -> None:
        """Train the cells and the sketches that are due on the graph's rows, code every position,
        and calibrate them, while queries go on.

        The graph only grows in ``_step`` under ``_graph_lock`` held alone, so holding it shared
        while copying rows keeps them still; k-means, the assignment and the coding run on copies,
        without locks. Rows indexed meanwhile are added when the new ones are put in place.
        """
        with self._training:  # the indexer and a flush() may both find them due
            with self._lock:
                cells_due, sketches_due = self._cells_due(), self._sketches_due()
            if cells_due or sketches_due:
                self._train_now(cells_due, sketches_due)

    def _train_now(self, cells_due: bool, sketches_due: bool) -> None:
        with self._graph_lock.shared():
            graph = self.graph
            if graph is None:
                return
            h = graph.ntotal
            rows = graph.vectors()
            want = min(h, SAMPLE_PER_CELL * cell_count(h))
            pick = np.sort(np.random.default_rng(h).choice(h, want, replace=False))
            sample = rows[pick]
        try:
            cells = Cells.train(sample, self.metric, h) if cells_due else None
            sketches = Sketches.train(sample, h) if sketches_due else None
            del sample
            assigned: list[np.ndarray] = []
            coded: list[np.ndarray] = []
            for start in range(0, h, 16_384):
                with self._graph_lock.shared():
                    if self.graph is not graph or self._closed:
                        return  # compacted meanwhile (the next due check starts again), or closing
                    block = graph.vectors()[start : min(h, start + 16_384)].copy()
                if cells is not None:
                    assigned.append(cells.assign(block))
                if sketches is not None:
                    coded.append(sketches.encode(block))
            if cells is not None:
                for part in assigned:
                    cells.extend_assigned(part)
            if sketches is not None:
                for part in coded:
                    sketches.extend_coded(part)
            picks = np.sort(np.random.default_rng(h + 1).choice(h, min(CALIBRATION_QUERIES, h // 20 or 1), replace=False))
            held = held_out(graph.vectors, h, picks, self.metric, hold=self._graph_lock.shared)
            for trained in (cells, sketches):
                if trained is not None:
                    trained.calibrate(held)
        except Exception:  # cells and sketches only speed filters up: without them the other plans serve
            self._training_failed_at = h
            log.exception("training cells and sketches on %d vectors failed; filtered queries use the other plans", h)
            return
        with self._graph_lock, self._lock:
            if self.graph is not graph:
                return
            for trained in (cells, sketches):
                if trained is not None and graph.ntotal > h:
                    trained.extend(graph.vectors()[h:])
            if cells is not None:
                self.cells = cells
            if sketches is not None:
                self.sketches = sketches
            self._trained_unsaved = True
            self._changed()
        log.info("trained %s on %d indexed vectors", " and ".join(
            what for what, done in (("cells", cells), ("sketches", sketches)) if done is not None), h)

    def _grow_graph(self, graph: HnswGraph, chunk: np.ndarray) -> None:
        """Add a chunk to the graph, and its rows to the cells and sketches (caller holds
        ``_graph_lock``)."""
        cells, sketches = self.cells, self.sketches
        if cells is not None and len(cells) != graph.ntotal:
            self.cells = cells = None  # out of step (never expected): drop them, they retrain
        if sketches is not None and len(sketches) != graph.ntotal:
            self.sketches = sketches = None
        graph.add(chunk)
        if cells is not None:
            cells.extend(chunk)
        if sketches is not None:
            sketches.extend(chunk)

    def _step(self, flush: bool) -> bool:
        """Do one unit of indexing work; returns False when there was none.

        The graph grows under ``_graph_lock`` only, so writers (which take ``_lock``) are never held
        up by it; searches take both locks (graph first, the same order as here) and wait for at
        most one chunk. A chunk that writers may still extend (the last, not yet full) is added
        with ``_lock`` held too.
        """
        with self._lock:
            train = self._training_due() and not self._needs_compaction()
        if train:
            self._train()
            return True
        with self._graph_lock:
            with self._lock:
                if not self._pending(flush):
                    return False
                if self._needs_compaction():
                    self._compact()
                    return True
                if self.graph is None:
                    self.graph = HnswGraph(self.dimensions, self.metric, self.params.m, self.params.ef_construction)
                graph, chunk = self.graph, self.tail[0]
                if len(chunk) < self.params.chunk:
                    self._grow_graph(graph, chunk)
                    self.tail.pop(0)
                    self._changed()
                    return True
            self._grow_graph(graph, chunk)
            with self._lock:
                assert self.tail[0] is chunk
                self.tail.pop(0)
                self._changed()
                due = not self.tail and graph.ntotal - self._snapshot_count >= self.params.snapshot_every
            if due:
                self._save_locked()
            return True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not self._pending(False):
                    self._wake.wait(timeout=1.0)
                if self._closed:
                    return
            try:
                self._step(False)
            except Exception:  # never let the indexer die silently; the tail stays exact-searchable
                log.exception("background indexing failed")
                with self._lock:
                    self._wake.wait(timeout=5.0)

    def flush(self) -> None:
        """Index everything now (the graph covers every position when this returns)."""
        while self._step(True):
            pass

    def _compact(self) -> None:
        """Drop dead positions: the living go back to the tail and the graph is rebuilt from it."""
        keep = np.flatnonzero(self.alive.view)
        rows = np.concatenate([part for part in self._all_rows()], axis=0)[keep] if self.size else np.empty(
            (0, self.dimensions), np.float32
        )
        labels = self.labels.view[keep].copy()
        ids = self.ids.take(keep.tolist())
        self.labels = _Growable(np.int64, len(labels))
        self.alive = _Growable(np.bool_, len(labels))
        self.ids = IdTable()
        self.graph = None
        if self.cells is not None:  # the centroids still describe the data: only positions changed
            old = self.cells
            self.cells = Cells(old.centroids, self.metric, old.trained_on, depths=old.depths, shares=old.shares)
        if self.sketches is not None:  # likewise the centre: the codes are made again as the graph grows
            old_sk = self.sketches
            self.sketches = Sketches(
                old_sk.centre, old_sk.trained_on, depths=old_sk.depths, reach=old_sk.reach, frequencies=old_sk.frequencies
            )
        self.tail = []
        self.dead = 0
        self.columns = {}
        self.namespaces = None
        self._snapshot_count = -1  # the next save must replace the old snapshot
        self._append(labels, ids, rows)
        self._changed()
        log.info("compacted: %d living vectors kept", len(labels))

    def _all_rows(self) -> Iterable[np.ndarray]:
        if self.graph is not None:
            yield self.graph.vectors()
        yield from self.tail

    # -- snapshots --------------------------------------------------------------------------------

    def _save_locked(self) -> None:
        """Write a snapshot; the caller holds ``_graph_lock`` (writers may go on meanwhile)."""
        if self._snapshot_dir is None or self.graph is None:
            return
        with self._lock:
            h = self.graph.ntotal
            labels = self.labels.view[:h].copy()
            extras = self._pack(h)
        save_snapshot(self._snapshot_dir, self.graph, labels, self.dimensions, extras)
        self._snapshot_count = h
        self._trained_unsaved = ("cells_centroids" not in extras and self.cells is not None) or (
            "sketch_codes" not in extras and self.sketches is not None
        )

    def _pack(self, upto: int) -> dict[str, np.ndarray]:
        """Ids, liveness and metadata columns of positions ``0 .. upto-1``, for the snapshot."""
        offsets, blob = self.ids.pack(upto)
        extras = {
            "alive": self.alive.view[:upto].copy(),
            "id_offsets": offsets,
            "id_blob": np.frombuffer(blob, dtype=np.uint8),
        }
        keys = list(self.columns)
        extras["column_keys"] = np.frombuffer(json.dumps(keys).encode(), dtype=np.uint8)
        for i, key in enumerate(keys):
            extras.update({f"c{i}_{k}": v for k, v in self.columns[key].pack(upto).items()})
        if self.namespaces is not None:
            extras.update({f"ns_{k}": v for k, v in self.namespaces.pack(upto).items()})
        if self.cells is not None and len(self.cells) >= upto:
            extras.update({f"cells_{k}": v for k, v in self.cells.pack(upto).items()})
        if self.sketches is not None and len(self.sketches) >= upto:
            extras.update({f"sketch_{k}": v for k, v in self.sketches.pack(upto).items()})
        return extras

    def save(self) -> bool:
        """Write a snapshot if the graph has grown since the last one. Returns whether it wrote."""
        with self._graph_lock:
            if self.graph is None or (self.graph.ntotal == self._snapshot_count and not self._trained_unsaved):
                return False
            self._save_locked()
            return True

    def close(self, snapshot: bool = True) -> None:
        with self._lock:
            self._closed = True
            self._kick()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if snapshot:
            self.save()

    # -- filtering --------------------------------------------------------------------------------

    def _column(self, key: str) -> Column:
        col = self.columns.get(key)
        if col is None:
            if self._column_source is None:
                raise RuntimeError("engine has no column source")
            labels, values, types = self._column_source(key, 0)
            col = self._build(labels, values, types)
            self.columns[key] = col
        return col

    def _build(self, labels: np.ndarray, values: list[Any], types: list[str | None]) -> Column:
        view = self.labels.view
        pos = np.searchsorted(view, labels)
        ok = (pos < len(view)) & (view[np.minimum(pos, max(len(view) - 1, 0))] == labels) if len(view) else np.zeros(
            len(labels), bool
        )
        keep = np.flatnonzero(ok)
        return Column.from_sqlite(
            self.size, pos[keep], [values[i] for i in keep.tolist()], [types[i] for i in keep.tolist()]
        )

    def ensure_column(self, key: str) -> None:
        """Build the column of a property now (a declared metadata index)."""
        with self._lock:
            self._column(key)

    def drop_column(self, key: str) -> None:
        with self._lock:
            self.columns.pop(key, None)

    def _namespace_column(self) -> Column:
        if self.namespaces is None:
            if self._namespace_source is None:
                raise RuntimeError("engine has no namespace source")
            labels, names = self._namespace_source(0)
            self.namespaces = self._build(labels, list(names), ["text" if n is not None else "null" for n in names])
        return self.namespaces

    def _changed(self) -> None:
        self._alive_mask_cache = None
        self._version += 1
        self._candidate_cache.clear()

    def _alive_mask(self) -> np.ndarray:
        if self._alive_mask_cache is None:
            self._alive_mask_cache = self.alive.view.copy()
        return self._alive_mask_cache

    def mask(self, flt: Filter | None, namespace: str | None) -> np.ndarray | None:
        """Candidate positions as a boolean mask, or ``None`` for "every living vector"."""
        with self._lock:
            if flt is None and namespace is None:
                return None if self.dead == 0 else self._alive_mask()
            mask = self._alive_mask().copy() if self.dead else np.ones(self.size, dtype=bool)
            if namespace is not None:
                mask &= self._namespace_column()._eq(namespace)
            if flt is not None:
                for cond in flt.conditions:
                    mask &= self._column(cond.key).evaluate(cond)
            return mask

    # -- searching --------------------------------------------------------------------------------

    def _higher_better(self) -> bool:
        return self.metric != "euclidean"

    def _tail_search(
        self, query: np.ndarray, tail: list[np.ndarray], start: int, tail_mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the tail's positions (``tail`` starts at position ``start``; those
        ``tail_mask``, over the tail, lets through)."""
        first = start
        dists: list[np.ndarray] = []
        poss: list[np.ndarray] = []
        for chunk in tail:
            n = len(chunk)
            if self.metric == "euclidean":
                diff = chunk - query
                d = np.einsum("ij,ij->i", diff, diff)
            else:
                d = chunk @ query
            p = np.arange(start, start + n)
            if tail_mask is not None:
                sel = tail_mask[start - first : start - first + n]
                d, p = d[sel], p[sel]
            dists.append(d)
            poss.append(p)
            start += n
        if not dists:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        return np.concatenate(dists), np.concatenate(poss)

    def nearest(self, query: np.ndarray, k: int) -> tuple[list[str], list[float]] | None:
        """Ids and scores of the top-k with no filter, from the graph alone, or ``None`` when that
        lean path does not apply (then :meth:`search`). ``query`` must already be float32 and
        prepared (a unit vector for cosine): this is the hot path of ``Index.query``."""
        lean = self._lean(query, k, with_labels=False)
        return None if lean is None else (lean[0], lean[2])

    def _lean(
        self, q: np.ndarray, k: int, with_labels: bool
    ) -> tuple[list[str], list[int] | None, list[float]] | None:
        """The lean path: ids, labels (when asked for: read under the lock, since a compaction
        renumbers positions) and scores, or ``None`` when it does not apply. Every microsecond here
        is a measurable share of a ~80 µs query."""
        lock = self._graph_lock
        token = lock.acquire_shared()
        try:
            graph = self.graph
            if self.dead or self.tail or graph is None:
                return None
            ef = self.params.ef_search
            if k > ef:  # noqa: PLR1730 - a comparison is cheaper than a max() call on the hot path
                ef = k
            d, pos = graph.search(q, k, ef, None)
            self._lean_plan = (self.labels.size, ef)  # nothing is dead: size is the count
            found = pos.tolist()
            distances = d.tolist()
            if found[-1] < 0:  # faiss pads a short answer with -1 at the end
                n = found.index(-1)
                del found[n:], distances[n:]
                pos = pos[:n]
            labels = self.labels.data[found].tolist() if with_labels else None
            return self.ids.take(found, pos), labels, self._score_list(distances)
        finally:
            lock.release_shared(token)

    def search(
        self, query: np.ndarray, k: int, flt: Filter | None = None, namespace: str | None = None
    ) -> list[tuple[str, int, float]]:
        """Top-k living vectors that pass ``flt`` and are in ``namespace``, best first.

        Returns ``(id, label, score)`` with Vectorize scores (see :meth:`scores`). Ids are resolved
        under the same lock as the search, so a concurrent delete cannot leave a hole.

        The common case (no filter or namespace, everything indexed, nothing deleted) holds the
        graph shared, so such queries run in parallel (faiss releases the GIL); it reads only
        append-only state (positions, ids, labels), and a write that returned before the query
        began has made the case uncommon (a tail or a dead position) and sends it the locked way.
        """
        q = np.ascontiguousarray(query, dtype=np.float32)
        if flt is None and namespace is None:
            lean = self._lean(q, k, with_labels=True)
            if lean is not None:
                ids, labels, scores = lean
                assert labels is not None
                return list(zip(ids, labels, scores))
        # Filtered: the candidates and each plan's inputs are prepared under the state lock; the
        # scoring runs under the shared graph lock alone, so filtered queries run in parallel too
        # (faiss releases the GIL). The graph, the cells and the id table only change with the
        # graph lock held alone; the tail is read from a copy of its list taken with the candidates.
        lock = self._graph_lock
        token = lock.acquire_shared()
        try:
            with self._lock:
                self._lean_plan = None
                cand = self._candidates(flt, namespace)
                if cand.count == 0:
                    self.last_plan = Plan("empty", 0)
                    return []
                h = self.indexed
                graph, tail = self.graph, list(self.tail)
                plan, work = self._plan_graph(cand, k, h)
            parts_d: list[np.ndarray] = []
            parts_p: list[np.ndarray] = []
            if work is not None:
                assert graph is not None
                kk = min(k, cand.graph_count)
                if plan.method == "cells":
                    cells, groups, share = work
                    nearby = cells.nearest(q, groups, share, self.params.cells_floor_per_k * k, self.params.cells_min)
                    d, pos = graph.exact(q, kk, nearby)
                    plan = Plan("cells", cand.count, scanned=len(nearby))
                elif plan.method == "sketch":
                    sketches, positions, codes, r = work
                    nearby = sketches.nearest(q, positions, codes, r)
                    d, pos = graph.exact(q, kk, nearby)
                    plan = Plan("sketch", cand.count, scanned=len(nearby))
                elif plan.copy:
                    rows, positions = work
                    d, pos = exact_rows(q, kk, rows, self.metric)
                    pos = positions[pos]
                elif plan.method == "exact":
                    d, pos = graph.exact(q, kk, work)
                else:
                    d, pos = graph.search(q, kk, plan.ef, work)
                valid = pos >= 0
                parts_d.append(d[valid])
                parts_p.append(pos[valid].astype(np.int64))
            if tail:
                d, pos = self._tail_search(q, tail, h, cand.tail_mask)
                parts_d.append(d.astype(np.float32))
                parts_p.append(pos)
            self.last_plan = plan
            if not parts_d:
                return []
            dist = np.concatenate(parts_d) if len(parts_d) > 1 else parts_d[0]
            pos = np.concatenate(parts_p) if len(parts_p) > 1 else parts_p[0]
            key = -dist if self._higher_better() else dist
            if len(dist) > k:
                part = np.argpartition(key, k - 1)[:k]
                dist, pos, key = dist[part], pos[part], key[part]
            order = np.lexsort((pos, key))
            return self._results(dist[order], pos[order])
        finally:
            lock.release_shared(token)

    def _plan_graph(self, cand: Candidates, k: int, h: int) -> tuple[Plan, Any]:
        """The plan for the graph's candidates and its input (see :func:`.planner.choose_plan`),
        under ``_lock``; derived forms of the set are counted in the candidate cache."""
        before = cand.nbytes
        try:
            cache = self._candidate_cache
            cache.use(cand)
            graph, p = self.graph, self.params
            budget = int(p.rows_cache_fraction * h * self.dimensions * 4)
            nbytes = cand.graph_count * self.dimensions * 4
            plan = choose_plan(cand, k, h, p, self.cells, graph is not None, self.sketches)
            if graph is not None and plan[0].method != "sketch" and worth_copying(cand, k, h, p, nbytes, budget):
                positions = cand.graph_positions()
                if cache.hold_rows(cand, nbytes, lambda: graph.vectors()[positions], budget):
                    plan = choose_plan(cand, k, h, p, self.cells, True, self.sketches)
            return plan
        finally:
            self._candidate_cache.grew(cand, before)

    def _candidates(self, flt: Filter | None, namespace: str | None) -> Candidates:
        """Candidate positions for a filter and namespace, cached until the engine changes."""
        key = (flt, namespace)
        cand = self._candidate_cache.get(key)
        if cand is None:
            cand = Candidates.build(self.mask(flt, namespace), self.count, self.indexed)
            self._candidate_cache.put(key, cand)
        return cand

    def _results(self, dist: np.ndarray, pos: np.ndarray) -> list[tuple[str, int, float]]:
        ids, labels = self.ids, self.labels.data
        return [(ids[p], int(labels[p]), s) for p, s in zip(pos.tolist(), self.scores(dist).tolist())]

    def _score_list(self, distance: list[float]) -> list[float]:
        """:meth:`scores` for a few distances, in plain Python (cheaper than numpy for k ≈ 10)."""
        if self.metric == "cosine":
            # Comparisons, not min/max calls: this runs for every result of every query.
            return [1.0 if x > 1.0 else -1.0 if x < -1.0 else x for x in distance]  # noqa: FURB136
        if self.metric == "dot-product":
            return [-x for x in distance]
        return [math.sqrt(x) if x > 0.0 else 0.0 for x in distance]

    def scores(self, distance: np.ndarray) -> np.ndarray:
        """Vectorize scores for faiss distances: cosine similarity, euclidean distance, −dot product."""
        d = distance.astype(np.float64)
        if self.metric == "cosine":
            return np.clip(d, -1.0, 1.0)
        if self.metric == "dot-product":
            return -d
        return np.sqrt(np.maximum(d, 0.0))

    # -- lookups by label (hybrid search re-scores a candidate list exactly) ---------------------

    def positions_of(self, labels: np.ndarray) -> np.ndarray:
        """Positions of living labels, −1 for labels that are absent or dead."""
        with self._lock:
            view = self.labels.view
            if not len(view):
                return np.full(len(labels), -1, dtype=np.int64)
            pos = np.minimum(np.searchsorted(view, labels), len(view) - 1)
            ok = (view[pos] == labels) & self.alive.data[pos]
            return np.where(ok, pos, -1).astype(np.int64)

    def admits(self, labels: np.ndarray, flt: Filter | None, namespace: str | None) -> np.ndarray:
        """Which labels are living vectors that pass ``flt`` in ``namespace``."""
        with self._lock:
            pos = self.positions_of(labels)
            ok = pos >= 0
            cand = self._candidates(flt, namespace)
            ok[ok] = cand.contains(pos[ok])
            return np.asarray(ok)

    def vectors_at(self, positions: np.ndarray) -> np.ndarray:
        """The stored (prepared) rows at these positions."""
        with self._graph_lock, self._lock:
            out = np.empty((len(positions), self.dimensions), dtype=np.float32)
            h = self.indexed
            in_graph = positions < h
            if in_graph.any() and self.graph is not None:
                out[in_graph] = self.graph.vectors()[positions[in_graph]]
            start = h
            for chunk in self.tail:
                sel = (positions >= start) & (positions < start + len(chunk))
                if sel.any():
                    out[sel] = chunk[positions[sel] - start]
                start += len(chunk)
            return out

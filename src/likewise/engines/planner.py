"""The planner of filtered queries: which positions may be returned, and how to search them.

A query with a filter or a namespace first becomes a :class:`Candidates` set (built once per
filter, namespace and engine state, and kept in a :class:`CandidateCache`). :func:`choose_plan`
then picks how to search the set's graph positions, from its size and the data's calibration, in
this order:

* **sketch**: a set of more than ``sketch_min_candidates`` and up to ``sketch_sqrt_factor``·√(k·h)
  candidates, where the calibrated sketches (:mod:`.sketches`) find a query's neighbours among a
  small share of the candidates: all candidates are ranked by their 1-bit codes (48 bytes a row
  at 384 dimensions, gathered once per set), and that share is scored exactly;
* **cells**: a selective set (more than ``cells_min_candidates``, up to ``cells_max_selectivity`` of
  the graph) where the calibrated cells (:mod:`.cells`) hold a query's neighbours in a small share
  of themselves: the candidates of the nearest cells are scored exactly;
* **exact**: few candidates (up to max(``exact_max_candidates``, ``exact_sqrt_factor``·√(k·h)))
  are scored exactly, straight from the graph's storage; a set that is queried again soon gets a
  contiguous copy of its rows (see :func:`worth_copying`; all copies within
  ``rows_cache_fraction`` of the graph's vector bytes), which is read front to back instead of row
  by row, so exact search pays for up to ``exact_rows_sqrt_factor``·√(k·h) candidates;
* **hnsw**: a broad set is searched in the graph restricted to a bitmap of the candidates, with
  ``efSearch`` raised in proportion to how selective the filter is.

The sketches come first where both apply: at 10,000 candidates of 100,000 they answered 1.17x
as fast as the cells, at recall 1.000 against 0.972, and at 10,000 of a million 0.95x as fast, at
recall 1.000 against 0.990 (benchmarks/bench_plans.py, docs/benchmarks-core.md § Sketches).
Beyond their range the cells read far fewer rows than the sketches' scan of every code.

The engine (:mod:`.engine`) runs the plan and searches its unindexed tail exactly beside it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..filters import Filter
from .cells import CellGroups, Cells
from .sketches import Sketches

if TYPE_CHECKING:
    from .engine import EngineParams

__all__ = ["CandidateCache", "Candidates", "Plan", "choose_plan", "exact_rows_limit", "sketch_reach", "worth_copying"]


@dataclass
class Candidates:
    """The positions a query may return, prepared once per (filter, namespace, engine version).

    Over the graph's positions a set is kept in the form its plan reads: sorted ``positions`` for
    exact search (scored by faiss straight from the graph's storage), a packed bitmap ``bits`` for
    faiss' ``IDSelectorBitmap`` in filtered HNSW; either is derived from the other when a query with
    another ``top_k`` needs the other plan. Both ``None``: every graph position is a candidate.
    """

    count: int  # living candidates in all
    graph_count: int  # of those, in the graph
    graph_size: int  # positions the graph covered when this was built
    tail_mask: np.ndarray | None  # over the tail's positions; None = every tail position
    positions: np.ndarray | None = None
    bits: np.ndarray | None = None
    groups: CellGroups | None = None  # the graph positions grouped by cell, for the cells plan
    codes: np.ndarray | None = None  # the sketches' codes of graph_positions(), for the sketch plan
    spread: float = -1.0  # Sketches.spread of those codes (-1: not measured yet)
    rows: np.ndarray | None = None  # the graph's rows at graph_positions(), contiguous (see worth_copying)
    uses: int = 0  # queries planned with this set (counted by CandidateCache.use)
    last_use: int = 0  # the cache's query clock at the last of them
    gaps: tuple[int, int] = (0, 0)  # queries between its last three uses (its reuse distances)

    @classmethod
    def build(cls, mask: np.ndarray | None, count: int, h: int) -> Candidates:
        """The set for a mask over every position (``None``: all ``count`` living vectors pass),
        the first ``h`` positions being the graph's."""
        if mask is None:
            return cls(count, h, h, None)
        graph_mask = mask[:h]
        graph_count = int(np.count_nonzero(graph_mask))
        tail_mask = mask[h:].copy()
        cand = cls(graph_count + int(np.count_nonzero(tail_mask)), graph_count, h, tail_mask)
        if graph_count < h:  # keep the smaller form; the other is derived when needed
            if graph_count * 64 < h:
                cand.positions = np.flatnonzero(graph_mask)
            else:
                cand.bits = np.packbits(graph_mask, bitorder="little")
        return cand

    @property
    def nbytes(self) -> int:
        """Bytes of the set's forms, the copy of its rows apart (counted by the cache on its own)."""
        arrays = sum(a.nbytes for a in (self.tail_mask, self.positions, self.bits, self.codes) if a is not None)
        return arrays + (self.groups.nbytes if self.groups is not None else 0)

    @property
    def rows_nbytes(self) -> int:
        return self.rows.nbytes if self.rows is not None else 0

    def cell_groups(self, cells: Cells) -> CellGroups:
        if self.groups is None:
            self.groups = cells.group(self.graph_positions())
        return self.groups

    def sketch_codes(self, sketches: Sketches) -> np.ndarray:
        if self.codes is None:
            self.codes = sketches.gather(self.graph_positions())
            self.spread = sketches.spread(self.codes)
        return self.codes

    def graph_positions(self) -> np.ndarray:
        if self.positions is None:
            assert self.bits is not None
            mask = np.unpackbits(self.bits, count=self.graph_size, bitorder="little")
            self.positions = np.flatnonzero(mask)
        return self.positions

    def graph_bits(self) -> np.ndarray:
        if self.bits is None:
            assert self.positions is not None
            mask = np.zeros(self.graph_size, dtype=np.bool_)
            mask[self.positions] = True
            self.bits = np.packbits(mask, bitorder="little")
        return self.bits

    def contains(self, positions: np.ndarray) -> np.ndarray:
        """Which of these (living) positions are candidates."""
        h = self.graph_size
        ok = np.ones(len(positions), dtype=np.bool_)
        in_graph = positions < h
        if self.positions is not None or self.bits is not None:
            g = positions[in_graph]
            if self.bits is not None:
                ok[in_graph] = (self.bits[g >> 3] >> (g & 7)) & 1 == 1
            else:
                have = self.graph_positions()
                found = np.minimum(np.searchsorted(have, g), max(len(have) - 1, 0))
                ok[in_graph] = (have[found] == g) if len(have) else False
        if self.tail_mask is not None:
            t = positions[~in_graph] - h
            ok[~in_graph] = self.tail_mask[t]
        return ok


class CandidateCache:
    """Candidate sets by (filter, namespace), least recently used first out, bounded in bytes.

    The copies of sets' rows are bounded apart, by the budget :meth:`hold_rows` is given: to make
    room for a new copy, the copies used least recently are dropped (their sets stay). Which sets
    are worth a copy is :func:`worth_copying`'s call.
    """

    def __init__(self, max_bytes: int = 64 << 20, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[tuple[Filter | None, str | None], Candidates] = OrderedDict()
        self._copies: OrderedDict[int, Candidates] = OrderedDict()  # by id(), least recently used first
        self._bytes = 0
        self.rows_bytes = 0
        self._clock = 0  # queries planned with a cached set: the clock of the sets' reuse distances
        self.max_bytes, self.max_entries = max_bytes, max_entries

    def get(self, key: tuple[Filter | None, str | None]) -> Candidates | None:
        cand = self._entries.get(key)
        if cand is not None:
            self._entries.move_to_end(key)
            if cand.rows is not None:
                self._copies.move_to_end(id(cand))
        return cand

    def put(self, key: tuple[Filter | None, str | None], cand: Candidates) -> None:
        self._entries[key] = cand
        self._bytes += cand.nbytes
        while len(self._entries) > 1 and (self._bytes > self.max_bytes or len(self._entries) > self.max_entries):
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.nbytes
            if old.rows is not None:
                self._drop_copy(old)

    def use(self, cand: Candidates) -> None:
        """Count a query planned with ``cand``: its uses and the gaps between them."""
        self._clock += 1
        cand.gaps = (cand.gaps[1], self._clock - cand.last_use)
        cand.uses, cand.last_use = cand.uses + 1, self._clock

    def grew(self, cand: Candidates, before: int) -> None:
        """A cached entry derived another form of its set (bits from positions or the reverse)."""
        self._bytes += cand.nbytes - before

    def hold_rows(self, cand: Candidates, nbytes: int, make: Callable[[], np.ndarray], budget: int) -> bool:
        """Give a cached set the copy of its rows that ``make()`` returns (``nbytes`` long), within
        ``budget`` bytes for all copies; returns whether the set has a copy."""
        if cand.rows is not None:
            return True
        if nbytes > budget:
            return False
        while self.rows_bytes + nbytes > budget:
            self._drop_copy(next(iter(self._copies.values())))
        cand.rows = make()
        self._copies[id(cand)] = cand
        self.rows_bytes += cand.rows_nbytes
        return True

    def _drop_copy(self, cand: Candidates) -> None:
        self.rows_bytes -= cand.rows_nbytes
        del self._copies[id(cand)]
        cand.rows = None

    def clear(self) -> None:
        self._entries.clear()
        self._copies.clear()
        self._bytes = 0
        self.rows_bytes = 0


@dataclass(frozen=True)
class Plan:
    """How a query was answered (for tests, benchmarks and ``explain``)."""

    method: str  # "exact" | "hnsw" | "cells" | "sketch" | "empty"
    candidates: int
    ef: int = 0
    scanned: int = 0  # cells and sketch plans: candidates scored exactly
    copy: bool = False  # exact plan: scored from the set's contiguous copy of its rows


def choose_plan(
    cand: Candidates, k: int, h: int, p: EngineParams, cells: Cells | None, graph: bool,
    sketches: Sketches | None = None,
) -> tuple[Plan, Any]:
    """How to search the graph's ``h`` positions for the top ``k`` of ``cand``, and that plan's
    input: ``(plan, input)``, the input ``None`` when the graph has nothing to search.

    Inputs: the sketches, the sorted positions, their codes and how many of them to score
    ("sketch"); the cells, the candidates grouped by cell and the share to read ("cells"); sorted
    positions, or ``None`` for all, or with ``plan.copy`` the pair (copy of the rows, positions)
    ("exact"); a packed bitmap, or ``None`` for all ("hnsw").
    """
    plan = Plan("exact", cand.count)
    if not graph or not cand.graph_count:
        return plan, None
    if cand.rows is not None and p.rows_cache_fraction > 0 and cand.graph_count <= exact_rows_limit(k, h, p):
        return Plan("exact", cand.count, copy=True), (cand.rows, cand.graph_positions())
    r = sketch_reach(cand, k, h, p, sketches)
    if r:
        assert sketches is not None
        work = (sketches, cand.graph_positions(), cand.sketch_codes(sketches), r)
        return Plan("sketch", cand.count, scanned=r), work
    if (
        p.cells
        and cells is not None
        and len(cells) == h
        and p.cells_min_candidates < cand.graph_count <= p.cells_max_selectivity * h
    ):
        share = cells.share(k * h / cand.graph_count)
        if share <= p.cells_max_share:
            return Plan("cells", cand.count), (cells, cand.cell_groups(cells), share)
    if cand.graph_count <= max(p.exact_max_candidates, p.exact_sqrt_factor * math.sqrt(k * h)):
        return plan, cand.graph_positions() if cand.graph_count < h else None
    selectivity = cand.graph_count / h
    ef = min(
        p.max_ef,
        max(p.ef_search, min(k, cand.graph_count), math.ceil(p.ef_filter_factor * k / selectivity)),
    )
    return Plan("hnsw", cand.count, ef), cand.graph_bits() if cand.graph_count < h else None


def sketch_reach(cand: Candidates, k: int, h: int, p: EngineParams, sketches: Sketches | None) -> int:
    """How many candidates the sketch plan would score exactly for this set, 0 when it does not
    apply: sketches off, missing, not covering the graph, the set outside the plan's range, the
    calibrated share too large to beat an exact scan, or the set crowded in one region of the
    space (its spread under ``sketch_min_spread``, see :meth:`.Sketches.spread`)."""
    m = cand.graph_count
    if (
        not p.sketches
        or sketches is None
        or len(sketches) != h
        or not p.sketch_min_candidates < m <= p.sketch_sqrt_factor * math.sqrt(k * h)
    ):
        return 0
    r = sketches.reach_for(k, m, h, p.sketch_floor_per_k * k)
    if r > p.sketch_max_share * m:
        return 0
    cand.sketch_codes(sketches)  # measures the set's spread, once
    return r if cand.spread >= p.sketch_min_spread else 0


def exact_rows_limit(k: int, h: int, p: EngineParams) -> float:
    """The most candidates an exact scan of a set's contiguous copy is planned for."""
    return max(p.exact_max_candidates, p.exact_rows_sqrt_factor * math.sqrt(k * h))


def worth_copying(cand: Candidates, k: int, h: int, p: EngineParams, nbytes: int, budget: int) -> bool:
    """Whether a set should get a contiguous copy of its rows (``nbytes`` of them) now.

    Its last two returns each came soon enough: an LRU of ``budget`` bytes keeps a set that comes
    back within about ``budget // nbytes`` queries, so a set that comes back later (one of sets
    queried in turn, more of them than the copies fit) would only be copied to be dropped; two
    returns, not one, so that a chance repeat among such sets does not pay for a copy. It is a
    strict part of the graph (all of it is contiguous already), and its exact scan would be
    planned once the copy is there. (The engine asks only for sets the sketch plan does not
    answer: it reads far fewer rows than any copy would save.)
    """
    return (
        cand.uses >= 3
        and cand.rows is None
        and p.rows_cache_fraction > 0
        and 0 < nbytes <= budget
        and max(cand.gaps) <= budget // nbytes
        and 0 < cand.graph_count < h
        and cand.graph_size == h
        and cand.graph_count <= exact_rows_limit(k, h, p)
    )

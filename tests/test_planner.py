"""The planner's choice, as a pure function of the candidate set, k, the graph size and the cells."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from likewise.engines import EngineParams
from likewise.engines.planner import Candidates, choose_plan


class FakeCells:
    """Calibrated cells whose share of cells to read is fixed."""

    def __init__(self, size: int, share: float) -> None:
        self.size, self._share = size, share
        self.depths: list[float] = []

    def __len__(self) -> int:
        return self.size

    def share(self, depth: float) -> float:
        self.depths.append(depth)
        return self._share

    def group(self, positions: np.ndarray) -> str:
        return f"groups of {len(positions)}"


def candidates(h: int, members: int) -> Candidates:
    mask = np.zeros(h, dtype=np.bool_)
    mask[np.linspace(0, h - 1, members).astype(np.int64)] = True
    return Candidates.build(mask, members, h)


H = 100_000


def test_no_graph_or_no_graph_candidates_is_exact_without_input() -> None:
    assert choose_plan(candidates(H, 500), 10, H, EngineParams(), None, graph=False)[1] is None
    plan, work = choose_plan(Candidates.build(np.zeros(H, np.bool_), 0, H), 10, H, EngineParams(), None, True)
    assert (plan.method, work) == ("exact", None)


def test_small_sets_are_scanned_exactly() -> None:
    limit = max(5000, 9 * math.sqrt(10 * H))  # 9·√(k·h) = 9,000 at 100k
    plan, work = choose_plan(candidates(H, int(limit)), 10, H, EngineParams(), None, True)
    assert plan.method == "exact" and len(work) == int(limit)
    plan, _ = choose_plan(candidates(H, int(limit) + 1), 10, H, EngineParams(), None, True)
    assert plan.method == "hnsw"


def test_selective_sets_take_cells_when_the_calibrated_share_is_small() -> None:
    cells = FakeCells(H, share=0.05)
    cand = candidates(H, 20_000)
    plan, work = choose_plan(cand, 10, H, EngineParams(), cells, True)  # type: ignore[arg-type]
    assert plan.method == "cells" and work == (cells, "groups of 20000", 0.05)
    assert cells.depths == [pytest.approx(10 * H / 20_000)]  # depth k·h/m
    # A share above cells_max_share, uncalibrated cells, or cells turned off: another plan.
    assert choose_plan(cand, 10, H, EngineParams(), FakeCells(H, 0.5), True)[0].method == "hnsw"  # type: ignore[arg-type]
    assert choose_plan(cand, 10, H, EngineParams(), FakeCells(H - 1, 0.05), True)[0].method == "hnsw"  # type: ignore[arg-type]
    assert choose_plan(cand, 10, H, EngineParams(cells=False), cells, True)[0].method == "hnsw"  # type: ignore[arg-type]
    # Broad sets (over cells_max_selectivity) never take cells.
    assert choose_plan(candidates(H, 30_000), 10, H, EngineParams(), cells, True)[0].method == "hnsw"  # type: ignore[arg-type]


def test_filtered_hnsw_raises_ef_with_selectivity() -> None:
    plan, bits = choose_plan(candidates(H, 20_000), 10, H, EngineParams(), None, True)
    assert plan.method == "hnsw" and plan.ef == max(64, math.ceil(1.2 * 10 / 0.2))
    assert int(np.unpackbits(bits, bitorder="little").sum()) == 20_000
    plan, _ = choose_plan(candidates(H, 30_000), 100, H, EngineParams(), None, True)
    assert plan.method == "hnsw" and plan.ef == 400  # 1.2·100/0.3, past the 9·√(k·h) exact limit
    plan, _ = choose_plan(candidates(H, 30_000), 100, H, EngineParams(max_ef=300), None, True)
    assert plan.ef == 300  # capped at max_ef
    plan, work = choose_plan(candidates(H, H), 10, H, EngineParams(), None, True)
    assert (plan.method, plan.ef, work) == ("hnsw", 64, None)  # every position: no bitmap


# -- contiguous copies of queried sets -----------------------------------------------------------


def test_a_set_is_copied_when_queried_again_soon_within_the_limits() -> None:
    from likewise.engines.planner import exact_rows_limit, worth_copying

    p = EngineParams()
    limit = exact_rows_limit(10, H, p)
    assert limit == 18.0 * math.sqrt(10 * H)
    cand = candidates(H, 10_000)  # over the 9·√(k·h) scattered limit, under the copy limit
    size, budget = 10_000 * 384 * 4, 4 * 10_000 * 384 * 4  # four such copies fit
    cand.uses, cand.gaps = 2, (1, 1)
    assert not worth_copying(cand, 10, H, p, size, budget)  # back once: no copy yet
    cand.uses = 3
    assert worth_copying(cand, 10, H, p, size, budget)
    cand.gaps = (4, 3)
    assert worth_copying(cand, 10, H, p, size, budget)
    cand.gaps = (5, 1)  # back after more queries than copies fit: an LRU would have dropped it
    assert not worth_copying(cand, 10, H, p, size, budget)
    cand.gaps = (1, 5)
    assert not worth_copying(cand, 10, H, p, size, budget)
    cand.gaps = (1, 1)
    assert not worth_copying(cand, 10, H, p, size, size - 1)  # the copy alone is over the budget
    assert not worth_copying(cand, 10, H, EngineParams(rows_cache_fraction=0.0), size, budget)
    big = candidates(H, int(limit) + 1)
    big.uses, big.gaps = 3, (1, 1)
    assert not worth_copying(big, 10, H, p, size, budget)  # a scan of that many rows would not be planned
    whole = Candidates.build(None, H, H)
    whole.uses, whole.gaps = 3, (1, 1)
    assert not worth_copying(whole, 10, H, p, size, budget)  # the graph's storage is contiguous already


def test_a_copied_set_is_scanned_exactly_from_its_copy() -> None:
    p = EngineParams()
    cand = candidates(H, 10_000)
    cells = FakeCells(H, 0.05)
    assert choose_plan(cand, 10, H, p, cells, True)[0].method == "cells"  # type: ignore[arg-type]
    cand.rows = np.zeros((10_000, 4), np.float32)
    plan, work = choose_plan(cand, 10, H, p, cells, True)  # type: ignore[arg-type]
    assert (plan.method, plan.copy) == ("exact", True)
    rows, positions = work
    assert rows is cand.rows and np.array_equal(positions, cand.graph_positions())
    # A deeper query whose limit the set passes, or copies turned off, plans as before.
    assert not choose_plan(cand, 10, H, EngineParams(rows_cache_fraction=0.0), cells, True)[0].copy  # type: ignore[arg-type]
    assert not choose_plan(cand, 10, H, EngineParams(exact_max_candidates=0, exact_rows_sqrt_factor=1.0), cells, True)[0].copy  # type: ignore[arg-type]


def test_copies_stay_within_their_budget_least_recently_used_first_out() -> None:
    from likewise.engines.planner import CandidateCache

    cache = CandidateCache(max_entries=3)
    sets = [candidates(H, 1000) for _ in range(4)]
    for i, c in enumerate(sets[:3]):
        cache.put((None, f"ns{i}"), c)

    def make(nbytes: int) -> Any:
        return lambda: np.zeros(nbytes // 4, np.float32)

    assert not cache.hold_rows(sets[0], 16_004, make(16_004), budget=16_000)  # over the budget alone
    assert cache.hold_rows(sets[0], 16_000, make(16_000), budget=20_000)
    assert cache.rows_bytes == 16_000
    assert cache.hold_rows(sets[1], 16_000, make(16_000), budget=20_000)  # ns0's copy makes room
    assert sets[0].rows is None and cache.rows_bytes == 16_000
    assert cache.hold_rows(sets[2], 8_000, make(8_000), budget=40_000)
    assert cache.rows_bytes == 24_000
    assert cache.get((None, "ns1")) is sets[1]  # ns1's copy is now the most recently used
    assert cache.hold_rows(sets[3], 24_000, make(24_000), budget=40_000)
    assert sets[2].rows is None and sets[1].rows is not None and cache.rows_bytes == 40_000
    cache.put((None, "ns3"), sets[3])  # ns0 is the least recently used set: it goes
    cache.put((None, "ns4"), candidates(H, 10))  # then ns2, then ns1, with its copy
    cache.put((None, "ns5"), candidates(H, 10))
    assert cache.get((None, "ns1")) is None and cache.rows_bytes == 24_000  # ns3's copy is left
    cache.clear()
    assert cache.rows_bytes == 0


def test_the_cache_counts_uses_and_the_gaps_between_them() -> None:
    from likewise.engines.planner import CandidateCache

    cache = CandidateCache()
    a, b = candidates(H, 100), candidates(H, 100)
    for cand in (a, b, b, a, a):
        cache.use(cand)
    assert (a.uses, a.gaps) == (3, (3, 1))  # used at queries 1, 4 and 5
    assert (b.uses, b.gaps) == (2, (2, 1))  # used at queries 2 and 3 (the first gap counts from 0)


# -- the sketch plan ------------------------------------------------------------------------------


class FakeSketches:
    """Calibrated sketches whose reach and spread are fixed."""

    def __init__(self, size: int, reach: int, spread: float = 1.0) -> None:
        self.size, self._reach, self._spread = size, reach, spread
        self.asked: list[tuple[int, int, int, int]] = []

    def __len__(self) -> int:
        return self.size

    def reach_for(self, k: int, m: int, h: int, floor: int) -> int:
        self.asked.append((k, m, h, floor))
        return max(self._reach, floor)

    def gather(self, positions: np.ndarray) -> np.ndarray:
        return np.zeros((len(positions), 8), np.uint8)

    def spread(self, codes: np.ndarray) -> float:
        return self._spread


def test_sets_in_the_sketch_range_take_the_sketch_plan_before_the_cells() -> None:
    p = EngineParams()
    limit = 18.0 * math.sqrt(10 * H)  # 18,000 at 100k
    sketches = FakeSketches(H, reach=300)
    cand = candidates(H, 10_000)
    plan, work = choose_plan(cand, 10, H, p, FakeCells(H, 0.05), True, sketches)  # type: ignore[arg-type]
    assert (plan.method, plan.scanned) == ("sketch", 300)
    got, positions, codes, r = work
    assert got is sketches and np.array_equal(positions, cand.graph_positions()) and len(codes) == 10_000 and r == 300
    assert sketches.asked == [(10, 10_000, H, 160)]  # floor sketch_floor_per_k·k
    assert cand.codes is codes and cand.spread == 1.0  # made once, cached with the set
    # Its range: more than sketch_min_candidates, up to sketch_sqrt_factor·√(k·h).
    assert choose_plan(candidates(H, int(limit)), 10, H, p, None, True, sketches)[0].method == "sketch"  # type: ignore[arg-type]
    assert choose_plan(candidates(H, int(limit) + 1), 10, H, p, None, True, sketches)[0].method == "hnsw"  # type: ignore[arg-type]
    assert choose_plan(candidates(H, 2000), 10, H, p, None, True, sketches)[0].method == "exact"  # type: ignore[arg-type]


def test_the_sketch_plan_steps_aside_when_it_would_not_pay_or_not_hold() -> None:
    p = EngineParams()

    def method(sketches: FakeSketches, params: EngineParams = p, members: int = 8000) -> str:
        return choose_plan(candidates(H, members), 10, H, params, None, True, sketches)[0].method  # type: ignore[arg-type]

    assert method(FakeSketches(H, reach=2000)) == "sketch"  # 25% of 8,000: sketch_max_share
    assert method(FakeSketches(H, reach=2001)) == "exact"  # more: an exact scan costs about the same
    assert method(FakeSketches(H, reach=300, spread=0.69)) == "exact"  # crowded in one region
    assert method(FakeSketches(H - 1, reach=300)) == "exact"  # not covering the graph
    assert method(FakeSketches(H, reach=300), EngineParams(sketches=False)) == "exact"

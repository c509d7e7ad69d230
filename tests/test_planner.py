"""The planner's choice, as a pure function of the candidate set, k, the graph size and the cells."""

from __future__ import annotations

import math

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

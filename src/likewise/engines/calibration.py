"""Held-out true neighbours: the measurement that the cells (:mod:`.cells`) and the sketches
(:mod:`.sketches`) are calibrated on.

Both answer a filtered query approximately, and how far they must reach to find a query's true
neighbours depends on the data, not only on its size. So when they are trained, some indexed
vectors are taken as queries (each left out of its own answer), their nearest neighbours at the
depths in :data:`DEPTHS` are found exactly, and each structure records, per depth, how far it had
to reach to hold its target share of them. A filtered query of ``k`` results over a set of
selectivity ``s`` needs about the top ``k/s`` of the whole data, so it reads what was recorded
for depth ``k/s`` (:func:`at_depth`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np

__all__ = ["CALIBRATION_QUERIES", "DEPTHS", "HeldOut", "at_depth", "held_out"]

DEPTHS = (10, 20, 50, 100, 200, 500, 1000, 2000)  # neighbour depths the calibration measures
CALIBRATION_QUERIES = 128


@dataclass
class HeldOut:
    """Calibration queries (indexed rows), and each one's true nearest positions, nearest first."""

    queries: np.ndarray  # float32 [q, d]
    nearest: np.ndarray  # int64 [q, max(depths)]
    depths: tuple[int, ...]  # the depths that fit this many rows


def at_depth(depth: float, depths: np.ndarray, values: np.ndarray) -> float | None:
    """What was recorded (``values``) for the calibrated ``depths``, at ``depth``: interpolated on
    log depth, held at the first value below the shallowest; ``None`` beyond the deepest or when
    nothing was calibrated (the caller then reads everything)."""
    if not len(depths) or depth > depths[-1]:
        return None
    return float(np.interp(math.log(max(depth, 1.0)), np.log(depths), values))


def held_out(
    rows_of: Callable[[], np.ndarray],
    h: int,
    picks: np.ndarray,
    metric: str,
    hold: Callable[[], AbstractContextManager[object]] | None = None,
) -> HeldOut:
    """The true neighbours among the first ``h`` rows of ``rows_of()`` of the rows at ``picks``,
    each excluded from its own answer, to the deepest of :data:`DEPTHS` that ``h`` allows.

    ``hold`` is a context manager factory taken around each use of the rows (the engine's shared
    graph lock), and ``rows_of`` is called inside it: the graph's storage can move between two
    holds, so a view must not outlive one.
    """
    hold = hold or nullcontext
    depths = tuple(d for d in DEPTHS if d <= h // 4) or (1,)
    deepest = max(depths)
    norms = None
    queries: list[np.ndarray] = []
    nearest: list[np.ndarray] = []
    for start in range(0, len(picks), 8):
        block = picks[start : start + 8]
        with hold():
            rows = rows_of()[:h]
            q = rows[block].copy()
            scores = rows @ q.T  # [h, b]; higher is nearer
            if metric == "euclidean":
                if norms is None:
                    norms = np.einsum("ij,ij->i", rows, rows)
                scores = 2 * scores - norms[:, None]
        scores[block, np.arange(len(block))] = -np.inf
        top = np.argpartition(-scores, deepest - 1, axis=0)[:deepest]
        for j in range(len(block)):
            nearest.append(top[np.argsort(-scores[top[:, j], j], kind="stable"), j])
        queries.append(q)
    return HeldOut(np.concatenate(queries), np.array(nearest, dtype=np.int64), depths)

"""Coarse cells over the graph's positions (k-means centroids and each position's cell), and the
"cells" plan that uses them to search a selective filter's candidates near the query only.

Why: a filter that keeps 1-20% of the vectors is the hard case for both other plans. Exact search
reads every candidate (10,000 rows at 1% of a million: ~1.5 ms of memory traffic), and filtered
HNSW has to walk ``1/selectivity`` times further than an unfiltered query because it meets mostly
non-candidates. Cells read neither: a candidate set is grouped by cell once (cached with the set),
and a query scores the centroids, then scores exactly the candidates of the nearest cells that hold
any: a calibrated share of those cells (below), and at least ``floor`` candidates. The work is
``C·d`` plus that share of the candidates, and a filter whose members are far from the query just
visits farther cells. No vector is stored twice: the cells hold positions, the rows stay in the
graph's storage.

The centroids are trained on a sample of the indexed rows (``√n`` cells) and retrained when the
graph has grown fourfold; positions added to the graph in between are assigned to the nearest
existing centroid.

How many cells a query must read depends on the data, not only on its size: on bench_core's
clustered vectors 3% of the cells hold 97% of a query's 100 nearest neighbours, on MiniLM
embeddings of real text it takes far more. So the cells are *calibrated* when trained: held-out
indexed vectors are used as queries, their true nearest neighbours at several depths (10 … 2,000)
are found exactly (:mod:`.calibration`), and for each depth the share of cells (in centroid order)
that holds 97% of them is recorded. A filtered query of ``k`` results over a set of selectivity
``s`` needs the top ``k/s`` of the whole data, so it reads that depth's share of the cells that
hold candidates; the planner uses the cells plan only where that share is small enough to beat an
exact scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import faiss as _faiss
import numpy as np

from .calibration import HeldOut, at_depth
from .columns import _Growable

faiss: Any = _faiss

__all__ = ["CellGroups", "Cells", "cell_count"]

SAMPLE_PER_CELL = 64  # faiss warns below 39 training points per centroid
ASSIGN_BLOCK = 65_536
RECALL_TARGET = 0.97  # share of each depth's neighbours the calibrated cells must hold


def cell_count(n: int) -> int:
    """How many cells for ``n`` rows: about √n (cells of ~√n rows), at least 16, at most 4,096,
    and never more than k-means can train from ``n`` rows (faiss wants 39 per centroid)."""
    return int(max(1, min(4096, max(16, round(math.sqrt(n))), n // 40)))


@dataclass
class CellGroups:
    """A candidate set's graph positions grouped by cell: cell ``c`` holds
    ``positions[offsets[c]:offsets[c+1]]``. Made once per candidate set and cached with it."""

    positions: np.ndarray  # int64, sorted by cell
    offsets: np.ndarray  # int64 [C + 1]
    counts: np.ndarray  # int64 [C]
    holding: int = 0  # cells that hold any of these positions

    @property
    def nbytes(self) -> int:
        return int(self.positions.nbytes + self.offsets.nbytes + self.counts.nbytes)


class Cells:
    """Centroids, and the cell of every graph position ``0 .. len(self) - 1``."""

    def __init__(
        self,
        centroids: np.ndarray,
        metric: str,
        trained_on: int,
        assignment: np.ndarray | None = None,
        depths: np.ndarray | None = None,
        shares: np.ndarray | None = None,
    ) -> None:
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.metric = metric
        self.trained_on = trained_on  # graph size when trained: retrain once it has grown 4x
        # Calibration: the share of cells to read for the top-``depths[i]`` neighbours (see module).
        self.depths = depths if depths is not None else np.zeros(0, dtype=np.float64)
        self.shares = shares if shares is not None else np.zeros(0, dtype=np.float64)
        self._assign = _Growable(np.int32, max(1024, 0 if assignment is None else len(assignment)))
        if assignment is not None:
            self._assign.extend(assignment)
        # Rank cells by the metric's own score; L2 centroids are ranked by |c|² - 2c·q.
        self._half_sq = 0.5 * np.einsum("ij,ij->i", self.centroids, self.centroids) if metric == "euclidean" else None
        quantizer = faiss.IndexFlatL2 if metric == "euclidean" else faiss.IndexFlatIP
        self._quantizer = quantizer(self.centroids.shape[1])
        self._quantizer.add(self.centroids)

    def __len__(self) -> int:
        return self._assign.size

    @property
    def count(self) -> int:
        return len(self.centroids)

    @classmethod
    def train(cls, rows: np.ndarray, metric: str, trained_on: int, seed: int = 1234) -> Cells:
        """k-means on ``rows`` (a sample of the graph's prepared rows) with :func:`cell_count` cells."""
        k = min(cell_count(trained_on), max(1, len(rows) // 40))
        # Spherical k-means for cosine (rows are unit vectors); plain k-means otherwise (for
        # dot-product this is faiss' own IVF practice: L2 cells, ranked by inner product).
        km = faiss.Kmeans(rows.shape[1], k, niter=10, seed=seed, spherical=metric == "cosine", verbose=False)
        km.train(np.ascontiguousarray(rows, dtype=np.float32))
        return cls(km.centroids, metric, trained_on)

    @property
    def calibrated(self) -> bool:
        return len(self.depths) > 0

    def share(self, depth: float) -> float:
        """Share of the cells to read for a query that needs the ``depth`` nearest neighbours of the
        whole data (interpolated on log depth); 1.0 beyond the deepest calibrated depth."""
        share = at_depth(depth, self.depths, self.shares)
        return 1.0 if share is None else share

    def _keys(self, queries: np.ndarray) -> np.ndarray:
        """Cell order keys of each query (smaller is nearer), ``[len(queries), C]``."""
        dots = queries @ self.centroids.T
        return self._half_sq - dots if self._half_sq is not None else -dots

    def calibrate(self, held: HeldOut) -> None:
        """Record, for each depth of ``held`` (true neighbours of held-out indexed rows), the share
        of cells, in centroid order, that holds 97% of those neighbours."""
        assign = self._assign.view
        keys = self._keys(held.queries)
        ranks: list[np.ndarray] = []
        for j, nearest in enumerate(held.nearest):
            rank = np.empty(self.count, dtype=np.int64)
            rank[np.argsort(keys[j], kind="stable")] = np.arange(self.count)
            ranks.append(rank[assign[nearest]])
        shares = []
        for d in held.depths:
            hist = np.bincount(np.concatenate([r[:d] for r in ranks]), minlength=self.count)
            covered = np.cumsum(hist) / hist.sum()
            shares.append((int(np.searchsorted(covered, RECALL_TARGET)) + 1) / self.count)
        self.depths = np.array(held.depths, dtype=np.float64)
        self.shares = np.maximum.accumulate(np.array(shares, dtype=np.float64))

    def assign(self, rows: np.ndarray) -> np.ndarray:
        """The nearest centroid of each row."""
        out = np.empty(len(rows), dtype=np.int32)
        for start in range(0, len(rows), ASSIGN_BLOCK):
            block = np.ascontiguousarray(rows[start : start + ASSIGN_BLOCK], dtype=np.float32)
            _d, nearest = self._quantizer.search(block, 1)
            out[start : start + len(block)] = nearest[:, 0]
        return out

    def extend(self, rows: np.ndarray) -> None:
        """Assign the rows just added to the graph (the positions after the last assigned one)."""
        self._assign.extend(self.assign(rows))

    def extend_assigned(self, cells: np.ndarray) -> None:
        self._assign.extend(cells)

    def assignment(self, upto: int) -> np.ndarray:
        return self._assign.view[:upto]

    def group(self, positions: np.ndarray) -> CellGroups:
        """Group sorted graph positions by cell (a stable sort keeps each cell's positions sorted)."""
        cells = self._assign.data[positions]
        order = np.argsort(cells, kind="stable")
        counts = np.bincount(cells, minlength=self.count).astype(np.int64)
        offsets = np.zeros(self.count + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return CellGroups(
            np.ascontiguousarray(positions[order], dtype=np.int64), offsets, counts, int(np.count_nonzero(counts))
        )

    def nearest(self, query: np.ndarray, groups: CellGroups, share: float, floor: int, min_cells: int = 1) -> np.ndarray:
        """Candidate positions of the cells nearest ``query``: of the cells that hold candidates, the
        nearest ``share`` of them, and more until at least ``floor`` candidates from at least
        ``min_cells`` cells are taken (or all of them).

        ``min_cells`` guards the case where the candidates crowd into a few cells far from the
        query: their nearest members then sit at the near edge of cells whose centroids can rank in
        any order, so several of those cells must be read. It is scaled by the share of cells that
        hold no candidate: candidates found in every cell follow the data, and the nearest cells
        hold their nearest members, as for an unfiltered search.
        """
        total = len(groups.positions)
        holding = groups.holding
        min_cells = math.ceil(min_cells * (1.0 - holding / self.count))
        need = max(math.ceil(share * holding), min_cells, 1)
        if floor >= total or need >= holding:
            return groups.positions
        key = self._keys(query[None, :])[0]
        key[groups.counts == 0] = np.inf  # cells without candidates come last
        # Cells expected for the floor if candidates were spread evenly, with a wide margin; the
        # full order is only computed when the margin was not enough.
        guess = min(holding, max(need, 2 * math.ceil(floor * holding / total)) + 8)
        order = None
        if guess < self.count:
            head = np.argpartition(key, guess - 1)[:guess]
            order = head[np.argsort(key[head], kind="stable")]
            sizes = groups.counts[order]
            if int(sizes.sum()) < floor:
                order = None
        if order is None:
            order = np.argsort(key, kind="stable")[:holding]
            sizes = groups.counts[order]
        reach = np.cumsum(sizes)
        used = min(len(order), max(need, int(np.searchsorted(reach, floor)) + 1))
        cells, sizes = order[:used], sizes[:used]
        taken = int(reach[used - 1])
        # Concatenate the chosen cells' slices without a Python loop: for each output slot, its
        # cell's start plus its rank within the cell.
        starts = groups.offsets[cells]
        shift = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
        return groups.positions[shift + np.arange(taken)]

    def pack(self, upto: int) -> dict[str, np.ndarray]:
        return {
            "centroids": self.centroids,
            "assignment": self._assign.view[:upto].copy(),
            "trained_on": np.array([self.trained_on], dtype=np.int64),
            "depths": self.depths,
            "shares": self.shares,
        }

    @classmethod
    def unpack(cls, data: dict[str, np.ndarray], metric: str) -> Cells:
        return cls(
            data["centroids"], metric, int(data["trained_on"][0]), data["assignment"].astype(np.int32),
            data.get("depths"), data.get("shares"),
        )

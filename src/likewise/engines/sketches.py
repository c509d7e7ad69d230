"""Sketches: a 1-bit code of every graph position, and the "sketch" plan that uses them to narrow a
filtered query's candidates down to a few before scoring those exactly.

Why: an exact scan of a candidate set reads each candidate's whole row (1,536 bytes at 384
dimensions), scattered through the graph's storage; 6,000 candidates take ~0.9 ms, several times an
unfiltered HNSW query. A sketch is one bit a dimension, the sign of the row minus the data's mean
(48 bytes at 384 dimensions: 1/32 of the row), and the Hamming distance between two sketches
follows the angle between the rows. The plan ranks all candidates by Hamming distance to the
query's sketch (faiss' Hamming kernel over the candidates' codes, gathered into one array once per
candidate set and cached with it), and scores only the ``r`` nearest exactly, from the graph's
storage. The result is still the exact
score of each returned vector; what can be missed is a true neighbour whose sketch ranked below
``r``.

How large ``r`` must be depends on the data, so the sketches are *calibrated* like the cells
(:mod:`.calibration`): for held-out indexed rows and each depth (10 … 2,000 true neighbours), the
Hamming rank among all rows that holds :data:`RECALL_TARGET` of those neighbours is recorded, as a
share of the rows. A query of ``k`` results over ``m`` candidates out of ``h`` needs about the top
``k·h/m`` of the whole data, so among the candidates it takes that depth's share of ``m``.

The centre (the mean of a sample of rows) is fixed when the sketches are trained, like the cells'
centroids; rows added later are coded against it, and the sketches are retrained with the cells.
"""

from __future__ import annotations

import math
from typing import Any

import faiss as _faiss
import numpy as np

from .calibration import HeldOut, at_depth
from .columns import _Growable

faiss: Any = _faiss

__all__ = ["RECALL_TARGET", "Sketches"]

RECALL_TARGET = 0.99  # share of each depth's true neighbours the calibrated rank must hold
ENCODE_BLOCK = 65_536  # rows coded at once (bounds the temporary boolean matrix)
CALIBRATION_BLOCK = 8  # queries whose distances to every code are held at once


class Sketches:
    """The centre, the 1-bit code of every graph position ``0 .. len(self) - 1``, and the
    calibrated reach (see the module)."""

    def __init__(
        self,
        centre: np.ndarray,
        trained_on: int,
        codes: np.ndarray | None = None,
        depths: np.ndarray | None = None,
        reach: np.ndarray | None = None,
        frequencies: np.ndarray | None = None,
    ) -> None:
        self.centre = np.ascontiguousarray(centre, dtype=np.float32)
        # Bytes a code, padded with zero bits to a multiple of 8: faiss' fast Hamming kernels.
        self.width = 8 * ((len(self.centre) + 63) // 64)
        self.trained_on = trained_on  # graph size when trained: retrained with the cells
        self.depths = depths if depths is not None else np.zeros(0, dtype=np.float64)
        self.reach = reach if reach is not None else np.zeros(0, dtype=np.float64)
        # How often each bit is set over all coded rows (measured with the calibration), the
        # reference of :meth:`spread`.
        self.frequencies = frequencies if frequencies is not None else np.zeros(0, dtype=np.float32)
        rows = 0 if codes is None else len(codes)
        self._codes = _Growable(np.uint8, max(1024, rows) * self.width)
        if codes is not None:
            self._codes.extend(np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1))

    def __len__(self) -> int:
        return self._codes.size // self.width

    @property
    def nbytes(self) -> int:
        return int(self._codes.data.nbytes)

    @classmethod
    def train(cls, sample: np.ndarray, trained_on: int) -> Sketches:
        """Sketches centred on the mean of ``sample`` (a sample of the graph's prepared rows)."""
        return cls(np.asarray(sample, dtype=np.float64).mean(axis=0), trained_on)

    def encode(self, rows: np.ndarray) -> np.ndarray:
        """The codes of ``rows``: bit ``j`` set when dimension ``j`` is above the centre's."""
        out = np.zeros((len(rows), self.width), dtype=np.uint8)
        used = (len(self.centre) + 7) // 8
        for start in range(0, len(rows), ENCODE_BLOCK):
            block = rows[start : start + ENCODE_BLOCK]
            out[start : start + len(block), :used] = np.packbits(block > self.centre, axis=1)
        return out

    def extend(self, rows: np.ndarray) -> None:
        """Code the rows just added to the graph (the positions after the last coded one)."""
        self._codes.extend(self.encode(rows).reshape(-1))

    def extend_coded(self, codes: np.ndarray) -> None:
        """Append codes made by :meth:`encode` (for the positions after the last coded one)."""
        self._codes.extend(codes.reshape(-1))

    def codes(self, upto: int) -> np.ndarray:
        return self._codes.view[: upto * self.width].reshape(upto, self.width)

    @property
    def calibrated(self) -> bool:
        return len(self.depths) > 0

    def calibrate(self, held: HeldOut) -> None:
        """Record, for each depth of ``held``, the Hamming rank among all coded rows (as a share of
        them) that holds :data:`RECALL_TARGET` of the true neighbours at that depth.

        A neighbour's rank is counted as the rows at its Hamming distance or nearer, ties included:
        the scan may order tied codes either way.
        """
        h = len(self)
        codes = self.codes(h)
        queries = self.encode(held.queries)
        ranks = np.empty(held.nearest.shape, dtype=np.int64)
        distances = np.empty((CALIBRATION_BLOCK, h), dtype=np.int32)
        for start in range(0, len(queries), CALIBRATION_BLOCK):
            block = np.ascontiguousarray(queries[start : start + CALIBRATION_BLOCK])
            faiss.hammings(faiss.swig_ptr(block), faiss.swig_ptr(codes), len(block), h, self.width,
                           faiss.swig_ptr(distances))
            for j, dist in enumerate(distances[: len(block)], start):
                # Rows at each distance or nearer, less the query's own row (at distance 0).
                at_most = np.cumsum(np.bincount(dist, minlength=8 * self.width + 1)) - 1
                ranks[j] = at_most[dist[held.nearest[j]]]
        reach = [float(np.quantile(ranks[:, :d], RECALL_TARGET)) / h for d in held.depths]
        self.depths = np.array(held.depths, dtype=np.float64)
        self.reach = np.minimum(1.0, np.maximum.accumulate(np.array(reach, dtype=np.float64)))
        self.frequencies = self._frequencies(codes)

    def _frequencies(self, codes: np.ndarray) -> np.ndarray:
        """The share of ``codes`` with each bit set."""
        counts = np.zeros(8 * self.width, dtype=np.int64)
        for start in range(0, len(codes), ENCODE_BLOCK):
            counts += np.unpackbits(codes[start : start + ENCODE_BLOCK], axis=1).sum(axis=0, dtype=np.int64)
        return (counts[: len(self.centre)] / max(len(codes), 1)).astype(np.float32)

    def spread(self, codes: np.ndarray) -> float:
        """How many bits two of a set's codes differ in, on average, against two of all rows' (from
        the bits' frequencies: ``Σ 2p(1-p)``): 1.0 for a set spread like the data, less for a set
        crowded in one region of the space.

        The calibration measures sets spread like the data (a random sample scores about 1.0). A
        set crowded in one region, such as one cluster of clustered data (tests/test_sketches.py),
        scores far less: its members agree on most bits, so for a query far from the cluster their
        codes barely tell them apart, and the calibrated reach does not hold
        (docs/architecture.md § Planner). 0.0 when not calibrated.
        """
        if not len(self.frequencies):
            return 0.0
        p, q = self._frequencies(codes), self.frequencies
        whole = float(np.sum(q * (1 - q)))
        return float(np.sum(p * (1 - p))) / whole if whole > 0 else 0.0

    def reach_for(self, k: int, m: int, h: int, floor: int) -> int:
        """How many of ``m`` candidates (out of ``h`` coded rows) to score exactly for the top ``k``:
        the calibrated share at depth ``k·h/m``, at least ``floor``; ``m`` (all of them) when the
        depth lies beyond the calibration or it is not calibrated."""
        share = at_depth(k * h / max(m, 1), self.depths, self.reach)
        if share is None:
            return m
        return min(m, max(floor, k, math.ceil(share * m)))

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """The codes at ``positions``, contiguous (made once per candidate set and cached with it)."""
        return np.take(self._codes.view.reshape(-1, self.width), positions, axis=0)

    def nearest(self, query: np.ndarray, positions: np.ndarray, codes: np.ndarray, r: int) -> np.ndarray:
        """Of ``positions`` (whose codes are ``codes``, see :meth:`gather`), those whose codes are
        at most as far from the query's as the ``r``-th nearest: ``r`` or a few more, since codes
        tied at that distance are all taken, in position order."""
        if r >= len(positions):
            return positions
        code = self.encode(query.reshape(1, -1))
        dist = np.empty(len(codes), dtype=np.int32)
        faiss.hammings(faiss.swig_ptr(code), faiss.swig_ptr(codes), 1, len(codes), self.width, faiss.swig_ptr(dist))
        # A counting select: distances are small integers, so the r-th smallest is found from their
        # histogram (cheaper than a partition of the distances).
        within = np.cumsum(np.bincount(dist, minlength=8 * self.width + 1))
        return positions[dist <= int(np.searchsorted(within, r))]

    def pack(self, upto: int) -> dict[str, np.ndarray]:
        return {
            "centre": self.centre,
            "codes": self.codes(upto).copy(),
            "trained_on": np.array([self.trained_on], dtype=np.int64),
            "depths": self.depths,
            "reach": self.reach,
            "frequencies": self.frequencies,
        }

    @classmethod
    def unpack(cls, data: dict[str, np.ndarray]) -> Sketches:
        return cls(
            data["centre"], int(data["trained_on"][0]), data["codes"], data["depths"], data["reach"], data["frequencies"]
        )


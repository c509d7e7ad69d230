"""The id of every engine position, kept compact: one UTF-8 blob with offsets, plus recent appends.

At a million vectors a Python list of ``str`` costs ~70 MB and ~0.4 s to rebuild on open; the blob
form costs ~18 MB, loads from a snapshot without a per-id step, and is decoded only for the ten or
so ids a query returns. Positions are append-only (compaction builds a new table), and a position's
id never changes: an upsert of an existing id gets a new position and the old one is marked dead.

When the ids are ASCII of similar lengths (keys, numbers, UUIDs: nearly always), a fixed-width copy
of them serves the query path: one memory read per id instead of two (offsets, then blob), in one
numpy call. A query's ten ids sit at random places, so each read is a cache (and, in a virtual
machine, a costly TLB) miss: benchmarks/bench_query_path.py's arms (100k, ef 10, varied queries)
measured 73.7 µs a query with this copy and 81.1 µs without. It costs at most what the offsets
and blob cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["IdTable"]


class IdTable:
    """Ids by position: ``blob[offsets[p]:offsets[p+1]]`` for packed positions, a list after them."""

    def __init__(self, offsets: np.ndarray | None = None, blob: bytes = b"") -> None:
        self._set_packed(offsets if offsets is not None else np.zeros(1, dtype=np.int64), blob)
        self._recent: list[str] = []

    def _set_packed(self, offsets: np.ndarray, blob: bytes) -> None:
        self._offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        # Indexing a memoryview gives Python ints ~20x faster than numpy scalar indexing, which
        # matters on the query path (ten lookups per query).
        self._offview = memoryview(self._offsets)  # type: ignore[arg-type]  # numpy arrays are buffers
        self._blob = blob
        self._packed = len(self._offsets) - 1
        self._fixed = _fixed_width(self._offsets, blob)

    def __len__(self) -> int:
        return self._packed + len(self._recent)

    def __getitem__(self, position: int) -> str:
        if position >= self._packed:
            return self._recent[position - self._packed]
        off = self._offview
        return self._blob[off[position] : off[position + 1]].decode()

    def take(self, positions: Sequence[int], array: np.ndarray | None = None) -> list[str]:
        """The ids at ``positions``. ``array``, the same positions as an int64 array (the query
        path has one from faiss), lets the fixed-width copy answer in one numpy call."""
        packed, recent = self._packed, self._recent
        fixed = self._fixed
        if fixed is not None and positions and max(positions) < packed:
            picked = fixed[array if array is not None else np.asarray(positions, dtype=np.int64)]
            return list(map(bytes.decode, picked.tolist()))
        off, blob = self._offview, self._blob
        return [
            blob[off[p] : off[p + 1]].decode() if p < packed else recent[p - packed] for p in positions
        ]

    def extend(self, ids: Sequence[str]) -> None:
        self._recent.extend(ids)

    def pack(self, upto: int) -> tuple[np.ndarray, bytes]:
        """``(offsets, blob)`` of positions ``0 .. upto-1`` (for a snapshot).

        Positions packed here stay packed, so each snapshot encodes only the ids added since the last.
        """
        if upto > self._packed:
            extra = [s.encode() for s in self._recent[: upto - self._packed]]
            lengths = np.fromiter((len(b) for b in extra), dtype=np.int64, count=len(extra))
            offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lengths)])
            self._recent = self._recent[upto - self._packed :]
            self._set_packed(offsets, self._blob + b"".join(extra))
        end = int(self._offsets[upto])
        return self._offsets[: upto + 1].copy(), self._blob[:end]

    @classmethod
    def of(cls, ids: Sequence[str]) -> IdTable:
        table = cls()
        table.extend(ids)
        return table


def _fixed_width(offsets: np.ndarray, blob: bytes) -> np.ndarray | None:
    """The ids as a numpy ``S<width>`` array, or ``None`` where that does not fit: an id that is
    not ASCII or holds a NUL (``S`` drops trailing NULs), or a width so uneven that the array would
    cost more than the offsets and blob. Ids of one length (UUIDs, hashes) are the blob itself,
    viewed, at no cost; others are copied in blocks of rows."""
    n = len(offsets) - 1
    if n == 0 or not blob.isascii() or b"\0" in blob:
        return None
    lengths = np.diff(offsets)
    width = int(lengths.max())
    if width == 0 or n * width > len(blob) + offsets.nbytes:
        return None
    src = np.frombuffer(blob, dtype=np.uint8)
    if int(lengths.min()) == width:
        return src[: n * width].view(f"S{width}")
    out = np.zeros(n * width, dtype=np.uint8)
    for a in range(0, n, 65536):  # in blocks: the index arrays take 8 bytes per character
        b = min(a + 65536, n)
        lens = lengths[a:b]
        # Each character's place in the padded rows: its row's start there, plus its place in its id.
        start = np.repeat(np.arange(a, b, dtype=np.int64) * width - offsets[a:b], lens)
        first, last = int(offsets[a]), int(offsets[b])
        out[start + np.arange(first, last)] = src[first:last]
    return out.view(f"S{width}")

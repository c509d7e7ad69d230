"""The write-ahead log check: find a damaged ``<db>-wal`` *before* SQLite reads it.

SQLite replays its log up to the first frame that fails its checksum and silently drops every frame
after it, committed and acknowledged transactions included. :func:`wal_problem` recomputes the
checksum chain (vectorised with numpy: one 8-byte step is linear mod 2**32) so the store can refuse
such a directory on open, and ``likewise verify`` can report it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["wal_problem"]


_WAL_MAGIC = (0x377F0682, 0x377F0683)
_MASK = np.uint64(0xFFFFFFFF)
_STEP = np.array([[1, 1], [1, 2]], dtype=np.uint64)


def _step_powers(n: int) -> np.ndarray:
    """``A**j`` (mod 2**32) for ``j < n``, where one 8-byte step of SQLite's checksum is ``s ← A·s + b``."""
    out = np.empty((n, 2, 2), dtype=np.uint64)
    cur = np.eye(2, dtype=np.uint64)
    for j in range(n):
        out[j] = cur
        cur = (_STEP @ cur) & _MASK
    return out


def _wal_checksums(words: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """SQLite's WAL checksum of each row of ``words`` (uint32 values), each from its own seed.

    The checksum runs ``s0 += x0 + s1; s1 += x1 + s0`` over pairs of words: a linear recurrence
    mod 2**32, so ``s_P = A**P·s_0 + Σ A**(P-1-k)·(x0_k, x0_k + x1_k)`` — computed for every frame at
    once with numpy (uint64 arithmetic wraps modulo 2**64, which keeps every result right mod 2**32).
    """
    pairs = words.shape[1] // 2
    powers = _step_powers(pairs + 1)
    rev = powers[:pairs][::-1]
    x0, x1 = words[:, 0::2], words[:, 1::2]
    b1 = (x0 + x1) & _MASK
    # (matmul of uint64 is ~7x faster than the equivalent einsum here)
    tail = np.stack([x0 @ rev[:, 0, 0] + b1 @ rev[:, 0, 1], x0 @ rev[:, 1, 0] + b1 @ rev[:, 1, 1]], axis=1)
    result: np.ndarray = (seeds @ powers[pairs].T + tail) & _MASK
    return result


def wal_problem(db_path: str | Path) -> str | None:
    """What is wrong with ``<db>-wal``, if SQLite would silently drop committed transactions from it.

    Each frame is checked against the checksum chain from the stored checksum of the frame before
    it, so damage to one frame does not hide the frames after it. A frame that fails with valid,
    committed frames after it is damage (a torn final write has nothing valid after it, and SQLite
    drops it correctly); so is a damaged log header in front of valid frames. ``None`` when the log
    is absent, empty, or only has an unfinished tail. The log is read in blocks (it can be large
    after a crash in the middle of a big import).
    """
    wal = Path(f"{db_path}-wal")
    try:
        fh = open(wal, "rb")  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        return None
    try:
        head = fh.read(32)
        if len(head) < 32:
            return None
        magic, _version, page_size, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I", head)
        if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
            page_size = _db_page_size(Path(db_path))
        if page_size is None:
            return None
        frame = 24 + page_size
        count = (wal.stat().st_size - 32) // frame
        if count == 0:
            return None
        orders = [">u4" if magic & 1 else "<u4"] if magic in _WAL_MAGIC else [">u4", "<u4"]
        for order in orders:
            header_words = np.frombuffer(head, dtype=order, count=6).astype(np.uint64)[None, :]
            header_ok = magic in _WAL_MAGIC and bool(
                (_wal_checksums(header_words, np.zeros((1, 2), np.uint64))[0] == (c1, c2)).all()
            )
            fh.seek(32)
            header, valid = _frames(fh, count, frame, order, (c1, c2), (salt1, salt2))
            if not header_ok:
                # the header's own salts may be what is damaged: judge the frames by the first one's
                # (frame 0 must chain from this header's checksum: a header torn by power loss in front
                # of an older, already checkpointed log does not, and is no loss)
                same = (header[:, 2] == header[0, 2]) & (header[:, 3] == header[0, 3])
                committed = valid & same & (header[:, 1] > 0)
                if valid[0] and committed.any():
                    return (f"{wal}: the log header is damaged, so SQLite would ignore the whole log and "
                            f"{int(committed.sum())} committed transactions in it (lost unless already checkpointed)")
                continue
            valid &= (header[:, 2] == salt1) & (header[:, 3] == salt2)
            committed = valid & (header[:, 1] > 0)
            bad = np.flatnonzero(~valid)
            if len(bad) and committed[bad[0] + 1 :].any():
                lost = int(committed[bad[0] + 1 :].sum())
                return (f"{wal}: frame {int(bad[0])} of {count} fails its checksum; SQLite would stop there and "
                        f"silently drop the {lost} committed transactions after it (lost unless already checkpointed)")
            return None
        return None
    finally:
        fh.close()


def _frames(
    fh: Any, count: int, frame: int, order: str, seed: tuple[int, int], salts: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Every frame's header (as 6 big-endian words) and whether its checksum holds, block by block."""
    header = np.empty((count, 6), dtype=np.uint64)
    valid = np.empty(count, dtype=bool)
    previous = np.array(seed, dtype=np.uint64)
    first_salts = np.zeros(2, dtype=np.uint64)
    for start in range(0, count, 256):
        n = min(256, count - start)
        block = fh.read(n * frame)
        if len(block) < n * frame:  # the log shrank under us (a live writer restarted it): stop here
            header[start:], valid[start:] = 0, False
            break
        raw = np.frombuffer(block, dtype=np.uint8).reshape(n, frame)
        part = np.frombuffer(raw[:, :24].tobytes(), dtype=">u4").reshape(n, 6).astype(np.uint64)
        seeds = np.empty((n, 2), dtype=np.uint64)
        seeds[0] = previous
        seeds[1:] = part[:-1, 4:6]
        # frames left over from an earlier generation of the log (other salts) are never replayed:
        # only the current generation's need their checksums computed
        if start == 0:
            first_salts = part[0, 2:4].copy()
        live = ((part[:, 2] == salts[0]) & (part[:, 3] == salts[1])) | (
            (part[:, 2] == first_salts[0]) & (part[:, 3] == first_salts[1]))
        ok = np.zeros(n, dtype=bool)
        if live.any():
            rows = raw[live]
            body = np.concatenate([rows[:, :8], rows[:, 24:]], axis=1)
            words = np.frombuffer(body.tobytes(), dtype=order).reshape(len(rows), -1).astype(np.uint64)
            ok[live] = (_wal_checksums(words, seeds[live]) == part[live][:, 4:6]).all(axis=1)
        valid[start : start + n] = ok
        header[start : start + n] = part
        previous = part[-1, 4:6]
    return header, valid


def _db_page_size(db: Path) -> int | None:
    try:
        with open(db, "rb") as fh:
            head = fh.read(18)
    except OSError:
        return None
    if len(head) < 18 or not head.startswith(b"SQLite format 3\0"):
        return None
    size = int.from_bytes(head[16:18], "big")
    return 65536 if size == 1 else size

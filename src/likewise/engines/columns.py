"""Columnar metadata: one typed array per metadata property, aligned with engine positions.

A filter becomes a boolean mask over positions by a few numpy comparisons per condition, which
is what makes filter-first search cheap. A column is built on first use of a property (from
SQLite's ``json_extract``) or at open for a declared metadata index, then kept current as vectors
are added. The semantics are those of :func:`likewise.filters.matches`, which the tests hold this
module to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..filters import MISSING, Condition, Scalar

__all__ = ["KIND_BOOL", "KIND_MISSING", "KIND_NULL", "KIND_NUMBER", "KIND_OTHER", "KIND_STRING", "Column"]

KIND_MISSING, KIND_NULL, KIND_BOOL, KIND_NUMBER, KIND_STRING, KIND_OTHER = range(6)

_SQLITE_KINDS = {
    None: KIND_MISSING,
    "null": KIND_NULL,
    "true": KIND_BOOL,
    "false": KIND_BOOL,
    "integer": KIND_NUMBER,
    "real": KIND_NUMBER,
    "text": KIND_STRING,
    "object": KIND_OTHER,
    "array": KIND_OTHER,
}


def _kind_of(value: Any) -> int:
    if value is MISSING:
        return KIND_MISSING
    if value is None:
        return KIND_NULL
    if isinstance(value, bool):
        return KIND_BOOL
    if isinstance(value, (int, float)):
        return KIND_NUMBER
    if isinstance(value, str):
        return KIND_STRING
    return KIND_OTHER


class _Growable:
    """A 1-D numpy array with amortised appends."""

    def __init__(self, dtype: Any, capacity: int = 1024) -> None:
        self.data = np.zeros(max(capacity, 16), dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self.data):
            grown = np.zeros(max(need, int(len(self.data) * 1.5)), dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : need] = values
        self.size = need

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.size]


class Column:
    """One metadata property over all positions: kind, numeric value and string code per position."""

    def __init__(self, capacity: int = 1024) -> None:
        self.kind = _Growable(np.int8, capacity)
        self.num = _Growable(np.float64, capacity)
        self.code = _Growable(np.int32, capacity)
        self.strings: list[str] = []
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return self.kind.size

    def _code(self, text: str) -> int:
        code = self._codes.get(text)
        if code is None:
            code = self._codes[text] = len(self.strings)
            self.strings.append(text)
        return code

    def append(self, values: Iterable[Any]) -> None:
        """Append the values (``MISSING`` for absent) of newly added positions."""
        vals = list(values)
        kinds = np.fromiter((_kind_of(v) for v in vals), dtype=np.int8, count=len(vals))
        nums = np.zeros(len(vals), dtype=np.float64)
        codes = np.full(len(vals), -1, dtype=np.int32)
        for i, (k, v) in enumerate(zip(kinds.tolist(), vals)):
            if k == KIND_NUMBER or k == KIND_BOOL:
                nums[i] = float(v)
            elif k == KIND_STRING:
                codes[i] = self._code(v)
        self.kind.extend(kinds)
        self.num.extend(nums)
        self.code.extend(codes)

    @classmethod
    def from_sqlite(cls, size: int, positions: np.ndarray, values: list[Any], types: list[str | None]) -> Column:
        """Build from ``json_extract``/``json_type`` results for the given positions (others missing)."""
        col = cls(size)
        kinds = np.zeros(size, dtype=np.int8)
        nums = np.zeros(size, dtype=np.float64)
        codes = np.full(size, -1, dtype=np.int32)
        k, n, c = col._convert(values, types)
        kinds[positions], nums[positions], codes[positions] = k, n, c
        col.kind.extend(kinds)
        col.num.extend(nums)
        col.code.extend(codes)
        return col

    def extend_sqlite(self, values: list[Any], types: list[str | None]) -> None:
        """Append positions from ``json_extract``/``json_type`` results (the rows replayed on open)."""
        k, n, c = self._convert(values, types)
        self.kind.extend(k)
        self.num.extend(n)
        self.code.extend(c)

    def _convert(self, values: list[Any], types: list[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kinds = np.fromiter((_SQLITE_KINDS.get(t, KIND_OTHER) for t in types), dtype=np.int8, count=len(types))
        nums = np.zeros(len(types), dtype=np.float64)
        codes = np.full(len(types), -1, dtype=np.int32)
        for i in np.flatnonzero(kinds == KIND_NUMBER).tolist():
            nums[i] = float(values[i])
        for i in np.flatnonzero(kinds == KIND_BOOL).tolist():
            nums[i] = 1.0 if types[i] == "true" else 0.0
        for i in np.flatnonzero(kinds == KIND_STRING).tolist():
            codes[i] = self._code(values[i])
        return kinds, nums, codes

    # -- snapshots (a column of positions 0..n-1 saved beside the graph that covers them) ----------

    def pack(self, upto: int) -> dict[str, np.ndarray]:
        """The arrays of positions ``0 .. upto-1`` and the string table, for a snapshot."""
        encoded = [s.encode() for s in self.strings]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        return {
            "kind": self.kind.view[:upto].copy(),
            "num": self.num.view[:upto].copy(),
            "code": self.code.view[:upto].copy(),
            "strings": np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(),
            "string_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        }

    @classmethod
    def unpack(cls, arrays: dict[str, np.ndarray]) -> Column:
        """The column :meth:`pack` saved (its string table may hold strings of later positions)."""
        kind = arrays["kind"]
        col = cls(len(kind))
        col.kind.extend(kind)
        col.num.extend(arrays["num"])
        col.code.extend(arrays["code"])
        blob, offsets = arrays["strings"].tobytes(), arrays["string_offsets"].tolist()
        col.strings = [blob[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:])]
        if len(kind) and int(arrays["code"].max(initial=-1)) >= len(col.strings):
            raise ValueError("string codes point past the string table")
        col._codes = {s: i for i, s in enumerate(col.strings)}
        return col

    # -- evaluation -------------------------------------------------------------------------------

    def _eq(self, value: Scalar) -> np.ndarray:
        kind = self.kind.view
        if value is None:
            return np.asarray(kind == KIND_NULL)
        if isinstance(value, bool):
            return np.asarray((kind == KIND_BOOL) & (self.num.view == (1.0 if value else 0.0)))
        if isinstance(value, float):
            return np.asarray((kind == KIND_NUMBER) & (self.num.view == value))
        code = self._codes.get(value)
        if code is None:
            return np.zeros(len(kind), dtype=bool)
        return np.asarray(self.code.view == code)  # codes are -1 for every non-string

    def _in(self, values: tuple[Scalar, ...]) -> np.ndarray:
        strings = [v for v in values if isinstance(v, str)]
        mask = np.zeros(len(self), dtype=bool)
        if strings:
            codes = [self._codes[s] for s in strings if s in self._codes]
            if codes:
                mask |= np.isin(self.code.view, np.array(codes, dtype=np.int32))
        for v in values:
            if not isinstance(v, str):
                mask |= self._eq(v)
        return mask

    def _range(self, op: str, bound: Scalar) -> np.ndarray:
        if isinstance(bound, str):
            chosen = [c for c, s in enumerate(self.strings) if _compare(op, s, bound)]
            if not chosen:
                return np.zeros(len(self), dtype=bool)
            return np.isin(self.code.view, np.array(chosen, dtype=np.int32))
        num = self.num.view
        assert isinstance(bound, float)
        if op == "$lt":
            hit = num < bound
        elif op == "$lte":
            hit = num <= bound
        elif op == "$gt":
            hit = num > bound
        else:
            hit = num >= bound
        return np.asarray(hit & (self.kind.view == KIND_NUMBER))

    def evaluate(self, cond: Condition) -> np.ndarray:
        """The positions (as a boolean mask) where ``cond`` holds."""
        op = cond.op
        if op == "$eq":
            return self._eq(cond.value)  # type: ignore[arg-type]
        if op == "$ne":
            return ~self._eq(cond.value)  # type: ignore[arg-type]
        if op == "$in":
            return self._in(cond.value)  # type: ignore[arg-type]
        if op == "$nin":
            return ~self._in(cond.value)  # type: ignore[arg-type]
        return self._range(op, cond.value)  # type: ignore[arg-type]

    def values_at(self, positions: np.ndarray) -> list[Any]:
        """The scalar values at these positions (``MISSING``/``None``/``bool``/``float``/``str``)."""
        out: list[Any] = []
        for p in positions.tolist():
            k = int(self.kind.data[p])
            if k == KIND_MISSING or k == KIND_OTHER:
                out.append(MISSING)
            elif k == KIND_NULL:
                out.append(None)
            elif k == KIND_BOOL:
                out.append(bool(self.num.data[p]))
            elif k == KIND_NUMBER:
                out.append(float(self.num.data[p]))
            else:
                out.append(self.strings[int(self.code.data[p])])
        return out


def _compare(op: str, left: str, right: str) -> bool:
    if op == "$lt":
        return left < right
    if op == "$lte":
        return left <= right
    if op == "$gt":
        return left > right
    return left >= right
